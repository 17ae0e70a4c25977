"""Your own data (issue 14): any label column, split control, whole recordings in windows, fast batch prediction,
calibrated probabilities, pseudo-labeling defaults that scale, one set of flag aliases."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import conftest


def run_script(script: str, *args, check: bool = True):
    """The stage's main() in-process, through its script's run_main wrapper (conftest.run_script)."""
    return conftest.run_script(script, *args, check=check, in_process=True)
from toolkit.evaluation.metrics import (MIN_CALIBRATION_CLIPS, MIN_CALIBRATION_SPEAKERS, choose_temperature,
                                        expected_calibration_error, fit_temperature)
from toolkit.io.splits import coverage_warnings, make_splits

SPLITS = ("train", "val", "test")
MOODS = {"ANG": "tense", "DIS": "tense", "FEA": "tense", "HAP": "bright", "NEU": "calm", "SAD": "calm"}


@pytest.fixture(scope="module")
def own_manifest(tiny_corpus, tmp_path_factory):
    """The corpus described as a user's own CSV: columns file, spk, gender (m/f) and mood (3 classes nobody built in)."""
    folder = tmp_path_factory.mktemp("own")
    actors = pd.read_csv(tiny_corpus / "VideoDemographics.csv").set_index("ActorID")
    rows = [{"file": f"../{tiny_corpus.name}/AudioWAV/{p.name}", "spk": f"speaker{p.name[:4]}",
             "gender": actors.loc[int(p.name[:4]), "Sex"][0].lower(), "mood": MOODS[p.name.split("_")[2]]}
            for p in sorted((tiny_corpus / "AudioWAV").iterdir())]
    pd.DataFrame(rows).to_csv(folder / "my_clips.csv", index=False)
    return folder


def test_a_manifest_with_its_own_columns_goes_through_stages_1_to_3_and_predict(own_manifest, sex_data, tmp_path):
    run_script("data_preprocessing.py", "--csv_file", own_manifest / "my_clips.csv", "--label_column", "gender",
               "--label_column", "mood", "--audio_column", "file", "--speaker_column", "spk", "--data_dir", tmp_path)
    for category, classes in (("gender", ["f", "m"]), ("mood", ["bright", "calm", "tense"])):
        manifest = json.loads((tmp_path / f"{category}_with_audio_path.json").read_text())
        assert manifest["classes"] == classes and manifest["speaker_column"] == "spk"
        table = pd.read_csv(tmp_path / f"{category}_with_audio_path.csv")
        assert len(table) == 96 and table["ActorID"].str.startswith("speaker").all()
    run_script("generate_mel_spectrograms.py", "--data_dir", tmp_path, "--save_spec_path", sex_data, "--save_csv_path",
               tmp_path, "--category", "gender", "--workers", "1")
    assert json.loads((tmp_path / "gender_split.json").read_text())["classes"] == ["f", "m"]
    run_script("train_cnn.py", "--data_dir", tmp_path, "--category", "gender", "--epochs", "1", "--batch_size", "32",
               "--threads", "1", "--model_dir", tmp_path / "models")
    card = json.loads((tmp_path / "models" / "cnn3_gender.json").read_text())
    assert card["category"] == "gender" and card["classes"] == ["f", "m"]
    clip = sorted((sex_data / "AudioWAV").iterdir())[0]
    run_script("predict.py", "--model_dir", tmp_path / "models", "--model_file", "cnn3_gender.pt", clip, "--out", tmp_path / "p.csv")
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert list(predicted.columns) == ["file", "seconds", "windows", "predicted", "p_f", "p_m", "distance",
                                       "unlike_training", "error"]
    assert predicted.loc[0, "predicted"] in ("f", "m")


def test_a_missing_column_names_the_flag_that_named_it(own_manifest, tmp_path):
    proc = run_script("data_preprocessing.py", "--csv_file", own_manifest / "my_clips.csv", "--label_column", "gender",
                      "--audio_column", "path", "--data_dir", tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        "my_clips.csv: missing column(s) ['path'] (--audio_column path); found ['file', 'spk', 'gender', 'mood']: "
        "give the right column's name with that flag"), proc.stderr


def test_classes_fix_the_order_and_leave_other_labels_out(own_manifest, tmp_path):
    proc = run_script("data_preprocessing.py", "--csv_file", own_manifest / "my_clips.csv", "--label_column", "mood",
                      "--classes", "tense,calm", "--speaker_column", "spk", "--csv_path", tmp_path)
    assert json.loads((tmp_path / "mood_with_audio_path.json").read_text())["classes"] == ["tense", "calm"]
    assert set(pd.read_csv(tmp_path / "mood_with_audio_path.csv")["mood"]) == {"tense", "calm"}
    assert "clip(s) left out: their mood (['bright']) is not in --classes" in proc.stdout


def test_without_a_speaker_column_the_split_is_by_clip_and_says_so(own_manifest, sex_data, tmp_path):
    proc = run_script("data_preprocessing.py", "--csv_file", own_manifest / "my_clips.csv", "--label_column", "gender",
                      "--csv_path", tmp_path)
    assert "no speaker column, so each clip counts as its own speaker and the split will be by clip" in proc.stdout
    run_script("generate_mel_spectrograms.py", "--data_dir", tmp_path, "--save_spec_path", sex_data, "--save_csv_path",
               tmp_path, "--category", "gender", "--workers", "1")
    assert json.loads((tmp_path / "gender_split.json").read_text())["kind"] == "clip (no speaker column)"


def test_a_folder_per_class_is_a_manifest_too(tiny_corpus, tmp_path):
    actors = pd.read_csv(tiny_corpus / "VideoDemographics.csv").set_index("ActorID")
    for wav in sorted((tiny_corpus / "AudioWAV").iterdir())[:30]:
        target = tmp_path / "root" / actors.loc[int(wav.name[:4]), "Sex"].lower() / f"spk{wav.name[:4]}" / wav.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, target)
    run_script("data_preprocessing.py", "--from_folders", "--audio_path", tmp_path / "root", "--label_column", "voice",
               "--csv_path", tmp_path)
    table = pd.read_csv(tmp_path / "voice_with_audio_path.csv")
    assert len(table) == 30 and set(table["voice"]) <= {"male", "female"} and table["ActorID"].str.startswith("spk").all()
    assert (tmp_path / table["Audio_file_path"][0]).is_file()


# ---------------------------------------------------------------- split control

def speakers_frame(n_speakers: int, clips: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sexes = ["Male"] * (n_speakers // 2) + ["Female"] * (n_speakers - n_speakers // 2)
    rng.shuffle(sexes)
    return pd.DataFrame([{"ActorID": 2000 + s, "sex": sexes[s], "Audio_file_name": f"{2000 + s}_{c}.wav"}
                         for s in range(n_speakers) for c in range(clips)])


@pytest.mark.parametrize("speakers", [8, 12, 16])
def test_validation_and_test_hold_every_class_whenever_the_data_allow(speakers):
    for seed in range(10):
        parts = make_splits(speakers_frame(speakers, seed=seed), "sex", "speaker", seed)
        for name, part in parts.items():
            assert set(part["sex"]) == {"Male", "Female"}, (speakers, seed, name)
        assert not set(parts["train"]["ActorID"]) & (set(parts["val"]["ActorID"]) | set(parts["test"]["ActorID"]))
        assert not set(parts["val"]["ActorID"]) & set(parts["test"]["ActorID"])


def test_what_the_data_cannot_give_is_a_warning():
    frame = speakers_frame(8)
    frame.loc[frame["ActorID"] == frame["ActorID"].iloc[0], "sex"] = "Other"  # a third class with one speaker
    parts = make_splits(frame, "sex", "speaker", 0)
    warnings = coverage_warnings(parts, "sex")
    assert any("has no clip of class(es) ['Other']" in w for w in warnings)
    assert any("part has 1 speaker(s)" in w or "part has 2 speaker(s)" in w for w in warnings)


def test_fractions_set_the_sizes(sex_data, tmp_path):
    run_script("generate_mel_spectrograms.py", "--data_dir", sex_data, "--save_spec_path", sex_data, "--save_csv_path",
               tmp_path, "--split", "random", "--val_fraction", "0.25", "--test_fraction", "0.25", "--workers", "1")
    sizes = {s: len(pd.read_csv(tmp_path / f"sex_{s}.csv")) for s in SPLITS}
    assert sizes == {"train": 48, "val": 24, "test": 24}
    assert json.loads((tmp_path / "sex_split.json").read_text())["fractions"] == {"train": 0.5, "val": 0.25, "test": 0.25}


def test_fractions_that_leave_nothing_to_train_on_are_refused(sex_data, tmp_path):
    proc = run_script("generate_mel_spectrograms.py", "--data_dir", sex_data, "--save_csv_path", tmp_path,
                      "--val_fraction", "0.5", "--test_fraction", "0.5", check=False)
    assert proc.returncode == 2 and "leave nothing to train on" in proc.stderr


# ---------------------------------------------------------------- whole recordings in windows

def test_a_long_recording_gets_its_majority_class_and_per_window_shows_the_minority(mlp_model, egemaps_data, tmp_path):
    """Six clips of men's voices and one of a woman's, with short pauses between them, as one recording."""
    scored = pd.read_csv(mlp_model / "mlp_sex_test_predictions.csv")  # test clips: voices the model never trained on
    men = scored[scored["sex"] == "Male"].nlargest(6, "p_Male")["Audio_file_path"]
    woman = scored[scored["sex"] == "Female"].nlargest(1, "p_Female")["Audio_file_path"].iloc[0]
    pause = np.zeros(int(0.6 * 16000))
    parts = [sf.read(egemaps_data / p)[0] for p in [*men[:3], woman, *men[3:]]]
    recording = np.concatenate([x for part in parts for x in (part, pause)])
    sf.write(tmp_path / "long.wav", recording, 16000)
    begin = sum(len(p) + len(pause) for p in parts[:3]) / 16000
    end = begin + len(parts[3]) / 16000
    run_script("predict.py", "--model_dir", mlp_model, "--model_file", "mlp_sex.pt", tmp_path / "long.wav",
               "--out", tmp_path / "whole.csv")
    whole = pd.read_csv(tmp_path / "whole.csv")
    assert whole.loc[0, "predicted"] == "Male" and whole.loc[0, "windows"] > 5
    assert whole.loc[0, "seconds"] == pytest.approx(len(recording) / 16000, abs=1e-3)
    run_script("predict.py", "--model_dir", mlp_model, "--model_file", "mlp_sex.pt", tmp_path / "long.wav",
               "--out", tmp_path / "windows.csv", "--per_window", "--window_hop", "0.25")
    windows = pd.read_csv(tmp_path / "windows.csv")
    overlap = (np.minimum(windows["end"], end) - np.maximum(windows["start"], begin)).clip(lower=0)
    # among the windows whose features are like the training clips': a few windows' eGeMAPS values lie far outside
    # anything trained on (distance in the hundreds), where the head's answer means nothing and the flag says so
    like_training = ~windows["unlike_training"].astype(bool)
    assert windows.loc[overlap[like_training].idxmax(), "predicted"] == "Female"  # the window that is mostly her voice
    assert (windows.loc[overlap == 0, "predicted"] == "Male").mean() > 0.8


def test_the_evaluation_path_scores_long_clips_on_all_their_windows(sex_data, tmp_path):
    """Stage 3's test predictions, its --extra_test_csv scores and predict.py agree on every test clip, the ones
    longer than the window too (a 2 s window here: the corpus's clips are 1.3-3.7 s)."""
    run_script("train_cnn.py", "--csv_load_path", sex_data, "--model", "cnn9", "--frames", "64", "--epochs", "1",
               "--batch_size", "32", "--threads", "1", "--model_save_path", tmp_path, "--extra_test_csv", "sex_test.csv")
    card = json.loads((tmp_path / "cnn9_sex.json").read_text())
    extra = json.loads((tmp_path / "cnn9_sex_extra_tests.json").read_text())["sex_test.csv"]
    for metric in ("f1", "loss", "ece"):
        assert extra[metric] == pytest.approx(card["metrics"]["test"][metric], abs=1e-6)
    assert extra["ece_uncalibrated"] == pytest.approx(card["calibration"]["ece_before"]["test"], abs=1e-6)
    expected = pd.read_csv(tmp_path / "cnn9_sex_test_predictions.csv")
    clips = [str((sex_data / p).resolve()) for p in expected["Audio_file_path"]]
    assert max(sf.info(c).duration for c in clips) > 64 * 512 / 16000  # some test clips are longer than the window
    run_script("predict.py", "--model_dir", tmp_path, "--model_file", "cnn9_sex.pt", *clips, "--out", tmp_path / "p.csv")
    got = pd.read_csv(tmp_path / "p.csv")
    assert (got["windows"] > 1).any()
    np.testing.assert_allclose(got[["p_Male", "p_Female"]].to_numpy(), expected[["p_Male", "p_Female"]].to_numpy(), atol=1e-5)


def test_batch_prediction_recursive_jsonl_and_quiet_windows(trained_cnn3, sex_data, tmp_path):
    nested = tmp_path / "in" / "a" / "b"
    nested.mkdir(parents=True)
    wavs = sorted((sex_data / "AudioWAV").iterdir())[:12]
    for wav in wavs:
        shutil.copy(wav, nested / wav.name)
    y, sr = sf.read(wavs[0])
    sf.write(tmp_path / "in" / "with_silence.wav", np.concatenate([y, np.zeros(5 * sr), y]), sr)
    out = tmp_path / "p.jsonl"
    proc = run_script("predict.py", "--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", tmp_path / "in", "--recursive",
                      "--format", "jsonl", "--out", out, "--workers", "2", "--batch_size", "7",
                      "--skip_quiet_windows", "30", "--per_window")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len({r["file"] for r in rows}) == 13 and all("p_Male" in r for r in rows if r["predicted"] != "(skipped: quiet)")
    silent = [r for r in rows if r["file"].endswith("with_silence.wav")]
    assert any(r["predicted"] == "(skipped: quiet)" for r in silent) and any(r["predicted"] != "(skipped: quiet)" for r in silent)
    assert "classified 13 of 13 file(s)" in proc.stdout


# ---------------------------------------------------------------- calibration

def test_temperature_scaling_finds_the_temperature_that_made_the_labels():
    torch.manual_seed(0)
    logits = torch.randn(4000, 4) * 4
    labels = torch.multinomial(torch.softmax(logits / 2.5, 1), 1).squeeze(1)  # the truth is 2.5 times less sure
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    before = expected_calibration_error(torch.softmax(logits, 1).numpy(), labels.numpy())
    after = expected_calibration_error(torch.softmax(logits / temperature, 1).numpy(), labels.numpy())
    assert after < before / 3


def test_temperature_scaling_never_sharpens():
    torch.manual_seed(0)
    logits = torch.randn(4000, 4)
    labels = torch.multinomial(torch.softmax(logits * 3, 1), 1).squeeze(1)  # the truth is 3 times surer
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=1e-3)


def overconfident(clips: int, speakers: int, truth: float, seed: int = 0):
    """Logits `truth` times surer than the labels drawn from them, and a speaker for every clip."""
    torch.manual_seed(seed)
    logits = torch.randn(clips, 3) * 4
    labels = torch.multinomial(torch.softmax(logits / truth, 1), 1).squeeze(1)
    return logits.numpy(), labels.numpy(), np.arange(clips) % speakers


def test_a_temperature_is_kept_where_validation_supports_it():
    temperature, note = choose_temperature(*overconfident(2000, 20, truth=2.5))
    assert temperature == pytest.approx(2.5, rel=0.1) and note.startswith("fitted on the validation split (held-out")


@pytest.mark.parametrize("clips, speakers, truth, reason", [
    (MIN_CALIBRATION_CLIPS - 1, 20, 2.5, f"validation has {MIN_CALIBRATION_CLIPS - 1} clips, fewer than the 100"),
    (2000, MIN_CALIBRATION_SPEAKERS - 1, 2.5, "validation has 3 speaker(s), fewer than the 4"),
    (2000, 20, 1.0, "did not lower the other half's NLL by 2%"),  # already calibrated: nothing to gain
])
def test_otherwise_the_temperature_is_1_and_the_note_says_why(clips, speakers, truth, reason):
    temperature, note = choose_temperature(*overconfident(clips, speakers, truth))
    assert temperature == 1.0 and reason in note


def test_a_run_is_calibrated_on_validation_and_says_so(trained_cnn3):
    card = json.loads((trained_cnn3 / "cnn3_sex.json").read_text())
    calibration = card["calibration"]
    assert calibration["method"] == "temperature" and calibration["temperature"] == 1.0  # 24 validation clips
    assert calibration["note"].startswith("not fitted: validation has 24 clips")
    assert set(calibration["ece_before"]) == {"val", "test"} and "ece" in card["metrics"]["test"]
    assert card["metrics"]["test"]["ece"] == calibration["ece_before"]["test"]
    assert (trained_cnn3 / "cnn3_sex_reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_a_folder_per_class_run_with_a_small_validation_split_is_not_made_worse(tiny_corpus, sex_data, tmp_path):
    """The case that once flattened every test probability to ~0.5: folders of classes, a few validation clips."""
    actors = pd.read_csv(tiny_corpus / "VideoDemographics.csv").set_index("ActorID")
    for wav in sorted((tiny_corpus / "AudioWAV").iterdir()):
        target = tmp_path / "root" / actors.loc[int(wav.name[:4]), "Sex"].lower() / f"spk{wav.name[:4]}" / wav.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, target)
    run_script("data_preprocessing.py", "--from_folders", "--audio_path", tmp_path / "root", "--label_column", "voice",
               "--csv_path", tmp_path)
    run_script("generate_mel_spectrograms.py", "--load_csv_path", tmp_path, "--save_spec_path", sex_data,  # (its images:
               "--save_csv_path", tmp_path, "--category", "voice", "--workers", "1")  # the same audio, none made again)
    proc = run_script("train_cnn.py", "--csv_load_path", tmp_path, "--category", "voice", "--model", "cnn3",
                      "--epochs", "3", "--batch_size", "16", "--threads", "1", "--model_save_path", tmp_path / "m")
    card = json.loads((tmp_path / "m" / "cnn3_voice.json").read_text())
    calibration, test = card["calibration"], card["metrics"]["test"]
    assert calibration["temperature"] == 1.0 and "calibration: temperature 1 (not fitted: validation has" in proc.stdout
    assert test["ece"] <= calibration["ece_before"]["test"] + 1e-12


# ---------------------------------------------------------------- pseudo-labeling defaults, flags

def test_pseudo_labeling_defaults_ramp_over_the_run(trained_cnn3, sex_data, tmp_path):
    for name in ("cnn3_sex.pt", "cnn3_sex.json"):
        shutil.copy(trained_cnn3 / name, tmp_path / name)
    proc = run_script("pseudo_labeling_semisupervised.py", "--csv_load_path", sex_data, "--unlabeled_csv",
                      sex_data / "sex_test.csv", "--epochs", "2", "--batch_size", "32", "--model_dir", tmp_path,
                      "--threads", "1", "--workers", "1")
    assert "pseudo-label weight: 0 until step 0, rising to 0.5 at step 1 (the run has 2 steps)" in proc.stdout
    history = pd.read_csv(tmp_path / "cnn3_sex_PL_metrics.csv")
    assert history["alpha"].tolist() == [0.5, 0.5] and history["pseudo_used"].tolist()[1] == 24  # epoch 2 at full weight


@pytest.mark.parametrize("typed, meant", [("--modle_dir x", "--model_dir"), ("--epoch 3", "--epochs"),
                                          ("--lr 1e-3", "--learning_rate")])
def test_a_mistyped_flag_gets_a_suggestion_and_is_never_taken_for_a_prefix(typed, meant):
    proc = run_script("train_cnn.py", *typed.split(), check=False)
    assert proc.returncode == 2 and f"unrecognized arguments: {typed}; did you mean {meant}?" in proc.stderr
