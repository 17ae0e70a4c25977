"""Stages 1-3 as a user runs them (subprocesses) on a tiny synthetic corpus."""
import json

import numpy as np
import pandas as pd
import torch

from conftest import run_script
from toolkit.features.mel import read_image
from toolkit.io.labels import CLASSES


def test_stage1_writes_the_category_csv(sex_data):
    df = pd.read_csv(sex_data / "sex_with_audio_path.csv")
    assert {"sex", "Audio_file_name", "Audio_file_path", "ActorID"} <= set(df.columns)
    assert len(df) == 8 * 12 and set(df["sex"]) == {"Male", "Female"}
    assert all((sex_data / p).is_file() for p in df["Audio_file_path"])


def test_stage1_reports_missing_audio(tiny_corpus, tmp_path):
    audio = tmp_path / "AudioWAV"
    audio.mkdir()
    names = sorted(p.name for p in (tiny_corpus / "AudioWAV").iterdir())[:5]
    for n in names:
        (audio / n).write_bytes((tiny_corpus / "AudioWAV" / n).read_bytes())
    seed_csv = pd.DataFrame({"ActorID": [int(n[:4]) for n in names] + [1001], "File Name": [n[:-4] for n in names] + ["1001_XXX_ANG_XX"],
                             "sex": "Male", "race": "Caucasian", "age": "30s", "Age": 33, "Ethnicity": "Not Hispanic"})
    seed_csv.to_csv(tmp_path / "CREMA_no_path.csv", index=False)
    proc = run_script("data_preprocessing.py", "--csv_file", "CREMA_no_path.csv", "--csv_path", tmp_path, "--audio_path", audio,
                      "--category", "age", in_process=True)
    assert "1 clip(s)" in proc.stdout and "1001_XXX_ANG_XX.wav" in proc.stdout
    assert len(pd.read_csv(tmp_path / "age_with_audio_path.csv")) == 5


def test_stage2_writes_pngs_and_disjoint_splits(sex_data):
    splits = {s: pd.read_csv(sex_data / f"sex_{s}.csv") for s in ("train", "val", "test")}
    assert sum(len(v) for v in splits.values()) == 8 * 12
    actors = [set(v["ActorID"]) for v in splits.values()]
    assert not (actors[0] & actors[1] or actors[0] & actors[2] or actors[1] & actors[2])
    image = read_image(str(sex_data / splits["test"]["Image_file_path"][0]))
    assert image.dtype == np.uint8 and image.shape[0] == 180
    params = json.loads(next((sex_data / "mel_spectrograms").glob("*/params.json")).read_text())
    assert params["n_fft"] == 1536 and params["hop_length"] == 512 and params["n_mels"] == 180


def test_stage2_rerun_skips_existing_images(sex_data):
    proc = run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", sex_data,
                      "--save_csv_path", sex_data, "--category", "sex", "--workers", "1", in_process=True)
    assert "96 mel files already made, 0 to make" in proc.stdout


def test_stage3_writes_model_metrics_and_plots(trained_cnn3):
    card = json.loads((trained_cnn3 / "cnn3_sex.json").read_text())
    assert card["schema"] == 1 and card["model"] == "cnn3" and card["classes"] == CLASSES["sex"]
    assert card["input"] == {"kind": "image", "shape": [3, 128, 128], "image_size": [128, 128], "time_axis": "pad", "frames": 128}
    assert card["features"] == {"type": "mel", "params": {"sr": 16000, "n_fft": 1536, "hop_length": 512, "n_mels": 180,
                                                          "top_db": 80.0, "db_ref": "fixed", "mel_scale": "slaney",
                                                          "pad_mode": "constant"}, "stats": None}
    assert card["init"] == ["scratch"] and card["training"]["recipe"] == "default" and card["training"]["epochs"] == 2
    assert card["split"]["kind"] == "speaker" and card["split"]["seed"] == 42 and card["split"]["speakers"]["test"] == 2
    assert 1 <= card["metrics"]["epoch"] <= 2
    assert {"accuracy", "f1", "precision", "recall", "confusion_matrix"} <= set(card["metrics"]["test"])
    state = torch.load(trained_cnn3 / "cnn3_sex.pt", weights_only=True)
    assert "encoder.conv.0.weight" in state
    history = pd.read_csv(trained_cnn3 / "cnn3_sex_metrics.csv")
    assert list(history["epoch"]) == [1, 2] and {"train_loss", "val_f1", "val_accuracy"} <= set(history.columns)
    for png in ("cnn3_sex_confusion_matrix.png", "cnn3_sex_training_curves.png"):
        assert (trained_cnn3 / png).read_bytes()[:4] == b"\x89PNG"


def test_stage3_errors_are_one_line(sex_data, tmp_path):
    for args, message in (
        (["--category", "height"], "height_train.csv: CSV not found"),
        (["--model", "resnet50"], "unknown model 'resnet50'"),
        (["--train_csv", "nope.csv"], "nope.csv: CSV not found"),
    ):
        proc = run_script("train_cnn.py", "--csv_load_path", sex_data, "--epochs", "1", "--model_save_path", tmp_path, *args,
                          check=False, in_process=True)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_corrupt_wav_is_reported_and_skipped(tiny_corpus, sex_data, tmp_path):
    run_script("data_preprocessing.py", "--csv_file", tiny_corpus / "VideoDemographics.csv", "--csv_path", tmp_path,
               "--audio_path", tiny_corpus / "AudioWAV", "--category", "emotion", in_process=True)
    table = pd.read_csv(tmp_path / "emotion_with_audio_path.csv")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    table.loc[0, "Audio_file_path"] = "broken.wav"
    table.to_csv(tmp_path / "emotion_with_audio_path.csv", index=False)
    proc = run_script("generate_mel_spectrograms.py", "--load_csv_path", tmp_path, "--save_spec_path", sex_data,
                      "--save_csv_path", tmp_path, "--category", "emotion", "--workers", "1",
                      in_process=True)  # (sex_data's images: reused)
    assert "1 clip(s) could not be used" in proc.stdout and "broken.wav" in proc.stdout
    total = sum(len(pd.read_csv(tmp_path / f"emotion_{s}.csv")) for s in ("train", "val", "test"))
    assert total == len(table) - 1


def test_seed_readme_stage4c_example_runs_as_written(sex_data, tmp_path):
    """The seed README's classifier example calls train_cnn.py with --model_save_and_load_path: it runs stage 4c
    (cnn_classifier.py) on the autoencoder's encoder that the README's previous step saved there."""
    import torch

    from models import build_model

    torch.save(build_model("cnn3", 2).encoder.state_dict(), tmp_path / "encoder_3_layers.pt")
    proc = run_script("train_cnn.py", "--csv_load_path", sex_data, "--category", "sex", "--train_csv", "sex_train.csv",
                      "--val_csv", "sex_val.csv", "--test_csv", "sex_test.csv", "--epochs", "1", "--batch_size", "64",
                      "--learning_rate", "1e-3", "--model_save_and_load_path", tmp_path, "--threads", "1",
                      in_process=True)
    assert "running cnn_classifier.py" in proc.stdout
    assert (tmp_path / "cnn3_ae_sex.pt").is_file() and not (tmp_path / "cnn3_sex.pt").exists()


def test_training_needs_no_audio_libraries(sex_data, tmp_path):
    """A GPU box with only torch/torchvision can train: stage 3 never imports librosa, soundfile or soxr."""
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import sys, runpy\n"
            "for m in ('librosa', 'soundfile', 'soxr'): sys.modules[m] = None\n"
            f"sys.argv = ['train_cnn.py', '--csv_load_path', {str(sex_data)!r}, '--epochs', '1', '--threads', '1',"
            f" '--model_save_path', {str(tmp_path)!r}]\n"
            "runpy.run_path('train_cnn.py', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "cnn3_sex.pt").is_file()
