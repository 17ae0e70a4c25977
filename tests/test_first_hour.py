"""A newcomer's natural mistakes get a message that points the right way (issue 24, items 6 and 7)."""
import shutil

from conftest import run_script


def test_a_category_of_ones_own_csv_points_to_label_column_not_to_a_missing_audio_folder(tmp_path):
    (tmp_path / "mine.csv").write_text("file,speaker,pitch\na.wav,s1,high\n")
    proc = run_script("data_preprocessing.py", "--csv_file", tmp_path / "mine.csv", "--category", "pitch",
                      "--data_dir", tmp_path, check=False, in_process=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"error: {tmp_path / 'mine.csv'}: no 'pitch' in CREMA-D's metadata (its categories: sex, age, "
                           f"race, emotion); for a label column of your own data pass --label_column pitch\n")


def class_speaker_tree(tiny_corpus, root):
    """root/<sex>/<speaker>/clip.wav from the corpus' first clips."""
    clips = sorted((tiny_corpus / "AudioWAV").glob("*.wav"))
    for c, sex in enumerate(("Female", "Male")):
        for s in range(3):
            folder = root / sex / f"spk{c}{s}"
            folder.mkdir(parents=True)
            for k in range(2):
                shutil.copy(clips[6 * c + 2 * s + k], folder / f"{k}.wav")


def test_from_folders_one_level_too_deep_says_where_the_classes_are(tiny_corpus, tmp_path):
    root = tmp_path / "voices"
    class_speaker_tree(tiny_corpus, root)
    proc = run_script("data_preprocessing.py", "--from_folders", "--audio_path", root / "Female", "--data_dir",
                      tmp_path / "out", in_process=True)
    assert (f"warning: {root / 'Female'}: its 3 subfolders were read as classes, but {root} holds it and other folders "
            f"laid out alike (<class>/<speaker>/clips); if those are the classes, pass --audio_path {root}") in proc.stdout
    assert "--speaker_column" not in proc.stdout  # a flag of CSV input, not of --from_folders
    assert f"put each speaker's clips in a folder below its class folder ({root / 'Female'}/<class>/<speaker>/)" in proc.stdout

    right = run_script("data_preprocessing.py", "--from_folders", "--audio_path", root, "--data_dir", tmp_path / "out",
                       in_process=True)
    assert "warning" not in right.stdout and "12 clips from 6 speakers (Female 6, Male 6)" in right.stdout


def test_a_class_with_one_clip_is_named_at_stage_1_and_stage_2_speaks_in_its_own_words(tiny_corpus, tmp_path):
    import pandas as pd

    table = pd.read_csv(tiny_corpus / "clips.csv")
    table["file"] = [str(tiny_corpus / f) for f in table["file"]]
    table.loc[0, "emotion"] = "surprised"
    table.to_csv(tmp_path / "mine.csv", index=False)
    data = tmp_path / "data"
    stage1 = run_script("data_preprocessing.py", "--csv_file", tmp_path / "mine.csv", "--label_column", "emotion",
                        "--speaker_column", "speaker", "--data_dir", data, in_process=True)
    assert ("warning: emotion: class 'surprised' has 1 clip(s) from 1 speaker(s); a speaker-disjoint split needs 3 "
            "speakers to put a class in train, validation and test") in stage1.stdout
    assert stage1.stdout.count("warning: emotion: class") == 1
    stage2 = run_script("generate_mel_spectrograms.py", "--data_dir", data, "--save_spec_path", data, "--save_csv_path",
                        data, "--category", "emotion", "--workers", "1", in_process=True)
    assert "site-packages" not in stage2.stderr and "UserWarning" not in stage2.stderr  # sklearn's raw warning
    assert "part has no clip of class(es) ['surprised']" in stage2.stdout


def test_summarize_runs_flags_a_score_that_says_nothing_about_a_class(trained_cnn3, tmp_path):
    import json

    import pandas as pd

    saved = json.loads((trained_cnn3 / "cnn3_sex_metrics.json").read_text())
    saved["metrics"]["test"]["per_class"]["Female"]["support"] = 0  # as for a class whose one speaker is in training
    (tmp_path / "cnn3_sex_metrics.json").write_text(json.dumps(saved))
    proc = run_script("summarize_runs.py", tmp_path, in_process=True)
    f1 = saved["metrics"]["test"]["f1"]
    assert (f"warning: cnn3_sex: weighted F1 {f1:.3f} says nothing about Female: no test clip of it "
            f"(add speakers of it, or use --folds)") in proc.stdout
    assert pd.read_csv(tmp_path / "runs_summary.csv")["untested classes"].tolist() == ["Female"]
