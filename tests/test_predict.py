"""predict.py: audio files -> the same predictions the evaluate loop makes on the stored test images."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr
import torch

import predict
from conftest import run_script
from models import build_model
from toolkit.io.labels import CLASSES


@pytest.fixture(scope="module")
def test_clips(sex_data):
    """The stage-3 test split: audio paths (absolute) in CSV order."""
    table = pd.read_csv(sex_data / "sex_test.csv")
    return [str((sex_data / p).resolve()) for p in table["Audio_file_path"]]


def predictions(out_csv) -> pd.DataFrame:
    return pd.read_csv(out_csv, keep_default_na=False).set_index("file")


def test_matches_the_evaluate_loop_on_test_images(trained_cnn3, sex_data, test_clips, tmp_path):
    out = tmp_path / "pred.csv"
    predict.main(["--model_dir", str(trained_cnn3), "--model_file", "cnn3_sex.pt", *test_clips[:4], "--out", str(out), "--device", "cpu"])
    # What fit() wrote after scoring the saved best epoch on the stored test images (the evaluate loop).
    expected = pd.read_csv(trained_cnn3 / "cnn3_sex_test_predictions.csv")
    expected.index = [str((sex_data / p).resolve()) for p in expected["Audio_file_path"]]
    got = predictions(out)
    assert list(got.index) == test_clips[:4]
    for clip in test_clips[:4]:
        assert got.loc[clip, "predicted"] == expected.loc[clip, "predicted"]
        for c in CLASSES["sex"]:
            assert abs(got.loc[clip, f"p_{c}"] - expected.loc[clip, f"p_{c}"]) < 1e-5
        assert got.loc[clip, "error"] == ""


def test_several_models_give_one_row_per_file_and_plots(trained_cnn3, test_clips, tmp_path, capsys):
    # A second, untrained model for another category: the plumbing, not the accuracy, is under test.
    models = tmp_path / "models"
    shutil.copytree(trained_cnn3, models, ignore=shutil.ignore_patterns("*_last.pt", "*.png", "*.csv"))
    torch.manual_seed(0)
    torch.save(build_model("cnn3", 6).state_dict(), models / "cnn3_emotion.pt")
    card = json.loads((models / "cnn3_sex.json").read_text())
    (models / "cnn3_emotion.json").write_text(json.dumps({**card, "category": "emotion", "classes": CLASSES["emotion"]}))

    out, plots = tmp_path / "pred.csv", tmp_path / "plots"
    predict.main(["--model_dir", str(models), "--model_file", "cnn3_sex.pt", "--model_file", "cnn3_emotion.pt",
                  *test_clips[:2], "--out", str(out), "--plot", str(plots), "--device", "cpu"])
    got = predictions(out)
    assert list(got.columns) == (["seconds", "windows", "sex_predicted", "sex_p_Male", "sex_p_Female", "sex_distance",
                                  "sex_unlike_training", "emotion_predicted"]
                                 + [f"emotion_p_{c}" for c in CLASSES["emotion"]]
                                 + ["emotion_distance", "emotion_unlike_training", "error"])  # out-of-domain: both cards
    assert len(got) == 2 and set(got["emotion_predicted"]) <= set(CLASSES["emotion"])
    np.testing.assert_allclose(got[[f"emotion_p_{c}" for c in CLASSES["emotion"]]].sum(axis=1), 1.0, atol=1e-4)
    printed = capsys.readouterr().out
    assert all(clip in printed for clip in test_clips[:2]) and "sex: " in printed and "emotion: " in printed
    pngs = sorted(plots.glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_stereo_44k_predicts_like_mono_16k_and_folders_expand(trained_cnn3, sex_data, tmp_path):
    # The model is barely trained: take the clips it is surest about, so resampling cannot flip a coin toss.
    scored = pd.read_csv(trained_cnn3 / "cnn3_sex_test_predictions.csv")
    clips = [str(sex_data / p) for p in scored.loc[(scored["p_Male"] - 0.5).abs().nlargest(3).index, "Audio_file_path"]]
    folder = tmp_path / "recordings"
    folder.mkdir()
    for i, clip in enumerate(clips):
        y, sr = sf.read(clip, dtype="float32")
        assert sr == 16000 and y.ndim == 1
        sf.write(folder / f"{i}_mono16k.wav", y, sr)
        y44 = soxr.resample(y, sr, 44100)
        sf.write(folder / f"{i}_stereo44k.flac", np.stack([y44, 0.6 * y44], axis=1), 44100)  # unequal channels
    (folder / "notes.txt").write_text("not audio")

    out = tmp_path / "pred.csv"
    predict.main(["--model_dir", str(trained_cnn3), "--model_file", "cnn3_sex.pt", str(folder), "--out", str(out), "--device", "cpu"])
    got = predictions(out)
    assert len(got) == 6 and not any(f.endswith(".txt") for f in got.index)
    for i in range(len(clips)):
        mono, stereo = got.loc[str(folder / f"{i}_mono16k.wav")], got.loc[str(folder / f"{i}_stereo44k.flac")]
        assert mono["predicted"] == stereo["predicted"]
        assert abs(mono["p_Male"] - stereo["p_Male"]) < 0.01  # resampling twice changes a few pixel values


def test_a_bad_clip_is_reported_and_the_others_predicted(trained_cnn3, test_clips, tmp_path):
    broken, out = tmp_path / "broken.wav", tmp_path / "pred.csv"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    proc = run_script("predict.py", "--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", test_clips[0], broken,
                      tmp_path / "missing.wav", test_clips[1], "--out", out, "--threads", "1", check=False, in_process=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "2 of 4 file(s) could not be classified" in proc.stderr
    assert "broken.wav" in proc.stdout and "missing.wav" in proc.stdout
    got = predictions(out)
    assert list(got["predicted"]) == [got["predicted"].iloc[0], "", "", got["predicted"].iloc[3]]
    assert got["predicted"].iloc[0] in CLASSES["sex"]
    assert "broken.wav" in got.loc[str(broken), "error"] and got.loc[test_clips[1], "error"] == ""


@pytest.mark.parametrize("problem", ["missing json", "other class count", "other architecture"])
def test_a_json_that_is_missing_or_does_not_match_is_a_one_line_error(trained_cnn3, test_clips, tmp_path, problem):
    shutil.copy(trained_cnn3 / "cnn3_sex.pt", tmp_path / "model.pt")
    card = json.loads((trained_cnn3 / "cnn3_sex.json").read_text())
    if problem == "other class count":
        (tmp_path / "model.json").write_text(json.dumps({**card, "category": "emotion", "classes": CLASSES["emotion"]}))
    elif problem == "other architecture":
        (tmp_path / "model.json").write_text(json.dumps({**card, "model": "cnn9"}))
    proc = run_script("predict.py", "--model_dir", tmp_path, "--model_file", "model.pt", test_clips[0], check=False,
                      in_process=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    named = "model.json: run card of model.pt not found" if problem == "missing json" else "model.pt: does not fit"
    assert named in proc.stderr


def test_plots_of_same_named_files_from_two_folders_do_not_overwrite_each_other(tmp_path):
    files = [str(tmp_path / "a" / "take.wav"), str(tmp_path / "b" / "take.wav"), str(tmp_path / "b" / "other.wav"),
             str(tmp_path / "x" / "a" / "take.wav")]
    names = predict.unique_png_names(files)
    assert names[files[0]] == "a_take.png" and names[files[1]] == "b_take.png" and names[files[2]] == "other.png"
    assert names[files[3]] == "x_a_take.png" and len(set(names.values())) == 4


def test_two_models_of_one_category_are_named_and_files_sharing_a_stem_keep_their_names(trained_cnn3, test_clips, tmp_path, capsys):
    from toolkit.errors import ToolkitError

    models = tmp_path / "models"
    shutil.copytree(trained_cnn3, models / "copy", ignore=shutil.ignore_patterns("*_last.pt", "*.png", "*.csv"))
    clips = tmp_path / "clips"
    clips.mkdir()
    y, sr = sf.read(test_clips[0], dtype="float32")
    sf.write(clips / "take.wav", y, sr)
    sf.write(clips / "take.flac", y, sr)
    (clips / "zz_broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    out, plots = tmp_path / "pred.csv", tmp_path / "plots"
    with pytest.raises(ToolkitError, match="1 of 3 file"):
        predict.main(["--model_dir", str(models), "--model_file", str(trained_cnn3 / "cnn3_sex.pt"),
                      "--model_file", "copy/cnn3_sex.pt",  # below --model_dir, not the working folder
                      str(clips), "--out", str(out), "--plot", str(plots), "--device", "cpu", "--threads", "1", "--workers", "1"])
    printed = capsys.readouterr().out
    line = next(l for l in printed.splitlines() if l.startswith(str(clips / "take.wav")))
    assert f"sex [{trained_cnn3.name}_cnn3_sex]: " in line and "sex [copy_cnn3_sex]: " in line  # as the columns
    assert sorted(p.name for p in plots.glob("*.png")) == ["take.flac.png", "take.wav.png"]
    header = out.read_text().splitlines()[0].split(",")
    assert len(header) == len(set(header))  # two cnn3_sex.pt: each model's columns under its folder's name
    assert {f"{trained_cnn3.name}_cnn3_sex_p_Female", "copy_cnn3_sex_p_Female"} <= set(header)
    windows = [row.split(",")[2] for row in out.read_text().splitlines()[1:]]
    assert windows[:2] == [str(predictions(out)["windows"].iloc[0])] * 2 and windows[0].isdigit() and windows[2] == ""
