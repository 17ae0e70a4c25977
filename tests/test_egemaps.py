"""eGeMAPS features end to end: stage 2 --features egemaps, linear/mlp through stage 3 (and --folds), predict.py,
summarize_runs.py; speaker normalisation for both feature types; bad input on the new path."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import predict
import conftest


def run_script(script: str, *args, check: bool = True):
    """The stage's main() in-process, through its script's run_main wrapper (conftest.run_script)."""
    return conftest.run_script(script, *args, check=check, in_process=True)
from toolkit.features import Egemaps, Mel
from toolkit.features.egemaps import EgemapsParams
from toolkit.io.audio import ClipError
from toolkit.io.labels import CLASSES
from toolkit.training.data import normalize_by_speaker


def voice(f0: float, seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.1 * y / np.abs(y).max() + 1e-3 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)


def test_extract_gives_the_88_functionals_and_files_round_trip(tmp_path):
    low, high = (Egemaps(EgemapsParams()).extract(voice(f0)) for f0 in (110, 220))
    assert low.shape == (88,) and low.dtype == np.float32 and np.isfinite(low).all()
    # the first functional is the mean F0 in semitones from 27.5 Hz: an octave is 12 semitones
    assert high[0] - low[0] == pytest.approx(12, abs=0.5)
    Egemaps().storage.save(low, str(tmp_path / "a.npy"))
    np.testing.assert_array_equal(Egemaps().storage.read(str(tmp_path / "a.npy")), low)
    assert not list(tmp_path.glob(".*tmp*"))


def test_a_clip_too_short_for_opensmile_is_a_clip_error_naming_it(tmp_path):
    sf.write(tmp_path / "short.wav", voice(150, seconds=0.05), 16000)  # long enough for a spectrogram
    with pytest.raises(ClipError, match=r"short\.wav: openSMILE gave \d+ non-finite eGeMAPSv02 values"):
        Egemaps(EgemapsParams()).from_audio(str(tmp_path / "short.wav"))


@pytest.mark.parametrize("content, reason", [
    (np.full(88, np.nan, np.float32), "non-finite"),
    (np.zeros((2, 88), np.float32), "shape (2, 88)"),
    (np.array([{"x": 1}], dtype=object), "not a readable .npy file"),  # a pickle: never loaded
])
def test_broken_feature_files_are_clip_errors(tmp_path, content, reason):
    np.save(tmp_path / "x.npy", content, allow_pickle=True)
    with pytest.raises(ClipError, match=re_escape(reason)):
        Egemaps().storage.read(str(tmp_path / "x.npy"))


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_speaker_normalisation_removes_each_speakers_own_mean_and_spread():
    rng = np.random.default_rng(0)
    vectors = [rng.normal(5 if i < 4 else -3, 2, 88).astype(np.float32) for i in range(8)]
    out = np.stack(normalize_by_speaker(Egemaps(), vectors, ["a"] * 4 + ["b"] * 4))
    for rows in (slice(0, 4), slice(4, 8)):
        np.testing.assert_allclose(out[rows].mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(out[rows].std(0), 1, atol=1e-4)
    images = [np.where(rng.random((20, 30)) < 0.2, 0, rng.integers(40 + 100 * (i // 2), 60 + 100 * (i // 2), (20, 30))).astype(np.uint8)
              for i in range(4)]
    normed = normalize_by_speaker(Mel(), images, ["a", "a", "b", "b"])
    for pair in ((0, 1), (2, 3)):
        pixels = np.concatenate([normed[i] for i in pair], axis=1).astype(float)
        valid = np.concatenate([images[i] for i in pair], axis=1) > 0
        band_means = [row[v].mean() for row, v in zip(pixels, valid)]
        np.testing.assert_allclose(band_means, 128, atol=1.0)  # each band centred, whatever the speaker's level
        assert ((pixels == 0) == ~valid).all()  # silence stays silence, nothing else becomes it


def test_stage2_writes_one_vector_per_clip_and_the_same_split_as_mel(egemaps_data, sex_data):
    for split in ("train", "val", "test"):
        table = pd.read_csv(egemaps_data / f"sex_{split}.csv")
        mel = pd.read_csv(sex_data / f"sex_{split}.csv")
        assert "egemaps_file_path" in table.columns and "Image_file_path" not in table.columns
        assert list(table["Audio_file_name"]) == list(mel["Audio_file_name"])  # same clips, same seed: same split
        assert Egemaps().storage.read(str(egemaps_data / table["egemaps_file_path"][0])).shape == (88,)
    manifest = json.loads((egemaps_data / "sex_split.json").read_text())
    assert manifest["features"] == "egemaps" and manifest["kind"] == "speaker" and sum(manifest["clips"].values()) == 96
    assert json.loads(next((egemaps_data / "egemaps").glob("*/params.json")).read_text()) == {"sr": 16000, "feature_set": "eGeMAPSv02"}


def test_mlp_learns_sex_from_egemaps_and_its_run_card_says_how(mlp_model):
    card = json.loads((mlp_model / "mlp_sex.json").read_text())
    assert card["features"]["type"] == "egemaps" and card["input"] == {"kind": "vector", "shape": [88]}
    stats = card["features"]["stats"]
    assert len(stats["mean"]) == len(stats["std"]) == 88 and min(stats["std"]) > 0
    assert card["metrics"]["test"]["f1"] > 0.8  # chance is 0.5: pitch is in eGeMAPS and sex is audible in it


def test_predict_reproduces_the_evaluation_probabilities(mlp_model, egemaps_data, tmp_path):
    expected = pd.read_csv(mlp_model / "mlp_sex_test_predictions.csv")
    clips = [str((egemaps_data / p).resolve()) for p in expected["Audio_file_path"]]
    out = tmp_path / "pred.csv"
    predict.main(["--model_dir", str(mlp_model), "--model_file", "mlp_sex.pt", *clips, "--out", str(out), "--device", "cpu"])
    got = pd.read_csv(out).set_index("file")
    for clip, (_, row) in zip(clips, expected.iterrows()):
        for c in CLASSES["sex"]:
            assert abs(got.loc[clip, f"p_{c}"] - row[f"p_{c}"]) < 1e-5


def test_cross_validation_and_the_results_table_take_egemaps(egemaps_data, mlp_model, tmp_path):
    run_script("train_cnn.py", "--csv_load_path", egemaps_data, "--category", "sex", "--model", "linear", "--folds", "2",
               "--epochs", "3", "--threads", "1", "--model_save_path", tmp_path / "cv")
    cv = json.loads((tmp_path / "cv" / "linear_sex_cv.json").read_text())
    assert len(cv["fold_results"]) == 2 and cv["run"]["features"]["type"] == "egemaps"
    shutil.copytree(mlp_model, tmp_path / "runs" / "mlp")
    run_script("summarize_runs.py", tmp_path / "runs")
    table = pd.read_csv(tmp_path / "runs" / "runs_summary.csv")
    assert table.loc[0, "model"] == "mlp" and table.loc[0, "features"] == "egemaps"


@pytest.mark.parametrize("model", ["cnn3", "resnet18"])
def test_an_image_model_on_egemaps_is_a_one_line_error(egemaps_data, tmp_path, model):
    proc = run_script("train_cnn.py", "--csv_load_path", egemaps_data, "--category", "sex", "--model", model, "--epochs", "1",
                      "--no-pretrained", "--model_save_path", tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(
        f"sex_train.csv: holds vector features, but {model} takes image features; use one of linear, mlp")


def test_a_run_card_of_another_feature_type_is_a_one_line_error_in_predict(mlp_model, egemaps_data, tmp_path):
    shutil.copy(mlp_model / "mlp_sex.pt", tmp_path / "m.pt")
    card = json.loads((mlp_model / "mlp_sex.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**card, "features": {**card["features"], "type": "mel"}}))
    clip = str(egemaps_data / pd.read_csv(egemaps_data / "sex_test.csv")["Audio_file_path"][0])
    proc = run_script("predict.py", "--model_file", tmp_path / "m.pt", clip, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "m.json: input kind 'vector' does not match feature type mel" in proc.stderr


def test_unreadable_and_nan_feature_files_are_reported_and_left_out(egemaps_data, tmp_path):
    work = tmp_path / "csv"
    work.mkdir()
    for split in ("train", "val", "test"):
        table = pd.read_csv(egemaps_data / f"sex_{split}.csv")
        table["egemaps_file_path"] = [str((egemaps_data / p).resolve()) for p in table["egemaps_file_path"]]
        if split == "train":
            np.save(work / "nan.npy", np.full(88, np.nan, np.float32))
            table.loc[0, "egemaps_file_path"] = str(work / "nan.npy")
            table.loc[1, "egemaps_file_path"] = str(work / "gone.npy")
        table.to_csv(work / f"sex_{split}.csv", index=False)
    proc = run_script("train_cnn.py", "--csv_load_path", work, "--category", "sex", "--model", "linear", "--epochs", "1",
                      "--threads", "1", "--model_save_path", tmp_path / "m")
    assert "warning: 2 feature file(s) listed in" in proc.stdout and "nan.npy: not egemaps values" in proc.stdout


@pytest.fixture(scope="module")
def emotion_egemaps(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("emotion_egemaps")
    run_script("data_preprocessing.py", "--csv_file", tiny_corpus / "VideoDemographics.csv", "--csv_path", out,
               "--audio_path", tiny_corpus / "AudioWAV", "--category", "emotion")
    run_script("generate_mel_spectrograms.py", "--load_csv_path", out, "--save_spec_path", out, "--save_csv_path", out,
               "--category", "emotion", "--features", "egemaps", "--workers", "2")
    return out


def test_speaker_normalised_model_predicts_like_its_evaluation_given_the_speakers(emotion_egemaps, tmp_path):
    run_script("train_cnn.py", "--csv_load_path", emotion_egemaps, "--category", "emotion", "--model", "mlp",
               "--normalize", "speaker", "--epochs", "5", "--threads", "1", "--model_save_path", tmp_path)
    card = json.loads((tmp_path / "mlp_emotion.json").read_text())
    assert card["normalize"] == "speaker" and card["training"]["normalize"] == "speaker"
    expected = pd.read_csv(tmp_path / "mlp_emotion_test_predictions.csv")
    clips = [str((emotion_egemaps / p).resolve()) for p in expected["Audio_file_path"]]
    proc = run_script("predict.py", "--model_file", tmp_path / "mlp_emotion.pt", *clips[:2], check=False)
    assert proc.returncode == 2 and "trained with --normalize speaker; pass --speakers" in proc.stderr
    pd.DataFrame({"file": clips, "speaker": expected["ActorID"]}).to_csv(tmp_path / "speakers.csv", index=False)
    out = tmp_path / "pred.csv"
    run_script("predict.py", "--model_file", tmp_path / "mlp_emotion.pt", *clips, "--speakers", tmp_path / "speakers.csv",
               "--out", out)
    got = pd.read_csv(out).set_index("file")
    for clip, (_, row) in zip(clips, expected.iterrows()):
        for c in CLASSES["emotion"]:
            assert abs(got.loc[clip, f"p_{c}"] - row[f"p_{c}"]) < 1e-5
