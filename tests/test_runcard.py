"""The run card: one versioned schema, written by every training stage, read by every reader; older sidecars load."""
import json
import shutil

import pytest
import torch

from conftest import ROOT, run_script
from models import build_model
from toolkit.errors import ToolkitError
from toolkit.runcard import SCHEMA, RunCard, read_card

LEGACY = ROOT / "tests" / "fixtures" / "legacy_cnn3_sex.json"  # written by 7eeeb9b, the version before run cards


def test_a_sidecar_of_the_version_before_run_cards_loads_as_a_card():
    card = read_card(str(LEGACY))
    assert (card.schema, card.model, card.category, card.classes) == (SCHEMA, "cnn3", "sex", ["Male", "Female"])
    assert card.features["type"] == "mel" and card.features["params"]["db_ref"] == "fixed"
    assert card.input == {"kind": "image", "shape": [3, 128, 128], "image_size": [128, 128], "time_axis": "pad", "frames": 128}
    assert card.input_options == {"image_size": [128, 128], "time_axis": "pad", "frames": 128}
    assert card.init == ["scratch"] and card.normalize == "none" and card.training["recipe"] == "default"
    assert card.training["epochs"] == 2 and card.metrics["epoch"] == 2 and card.metrics["test"]["f1"] == pytest.approx(1 / 3)


def test_a_card_round_trips_through_json(tmp_path):
    card = read_card(str(LEGACY))
    card.save(str(tmp_path / "c.json"))
    saved = json.loads((tmp_path / "c.json").read_text())
    assert next(iter(saved)) == "schema" and RunCard.from_dict(saved, "c.json") == card


def test_the_old_autoencoder_json_loads_as_a_card():
    old = {"model": "autoencoder_3_layers", "category": "sex", "encoder_file": "encoder_3_layers.pt",
           "decoder_file": "decoder_3_layers.pt", "image_size": [128, 128], "time_axis": "pad", "frames": 128,
           "spectrogram": {"n_mels": 180}, "train_csv": "/d/sex_train.csv", "images": 60, "epochs": 4, "seconds": 1.5,
           "loss": 0.0456, "args": {}}
    card = RunCard.from_dict(old, "autoencoder_3_layers.json")
    assert card.model == "autoencoder" and card.classes == [] and card.metrics["loss"] == 0.0456
    assert card.split["csvs"]["train"] == "/d/sex_train.csv" and card.init_detail["encoder_file"] == "encoder_3_layers.pt"


@pytest.mark.parametrize("change, message", [
    ({"schema": SCHEMA + 1}, f"run card schema {SCHEMA + 1} is newer than this toolkit's ({SCHEMA}); update the toolkit"),
    ({"schema": "one"}, "run card schema 'one' is not a version number"),
    ({"features": {"type": "wav2vec9"}}, "unknown feature type 'wav2vec9' (this toolkit has mel, egemaps, compare, ssl, waveform, fbank, ltas)"),
    ({"classes": ["Male", "Male"]}, "'classes' must list at least 2 distinct class names"),
    ({"input": {"kind": "vector", "shape": [88]}}, "input kind 'vector' does not match feature type mel"),
])
def test_a_card_from_elsewhere_is_checked_on_load(change, message):
    card = read_card(str(LEGACY)).to_dict()
    with pytest.raises(ToolkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunCard.from_dict({**card, **change}, "x.json")


def test_predict_uses_a_model_whose_card_is_an_old_sidecar(sex_data, tmp_path):
    shutil.copy(LEGACY, tmp_path / "cnn3_sex.json")
    torch.manual_seed(0)
    torch.save(build_model("cnn3", 2).state_dict(), tmp_path / "cnn3_sex.pt")
    clip = sex_data / "AudioWAV" / sorted(p.name for p in (sex_data / "AudioWAV").iterdir())[0]
    proc = run_script("predict.py", "--model_dir", tmp_path, "--model_file", "cnn3_sex.pt", clip, in_process=True)
    assert "sex: " in proc.stdout and "classified 1 of 1 file(s)" in proc.stdout


def test_a_run_stopped_before_its_test_scores_is_refused_by_every_reader(sex_data, tmp_path, monkeypatch):
    """The weights and card of the best epoch so far are on disk while training runs; until the run is scored on
    test the card says so, and a reader refuses it rather than take an unfinished run for a finished one."""
    import toolkit.training.callbacks

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # as if Ctrl-C came just after the last epoch

    monkeypatch.setattr(toolkit.training.callbacks, "report", stopped)
    proc = run_script("train_cnn.py", "--csv_load_path", sex_data, "--epochs", "1", "--batch_size", "32", "--threads", "1",
                      "--model_save_path", tmp_path, check=False, in_process=True)
    assert proc.returncode == 130 and (tmp_path / "cnn3_sex.pt").is_file()
    assert json.loads((tmp_path / "cnn3_sex.json").read_text())["complete"] is False
    with pytest.raises(ToolkitError, match=r"cnn3_sex.json: an unfinished run \(stopped at epoch 1 before its test scores\); "
                                           r"finish it with the same command and --resume, or train it again"):
        read_card(str(tmp_path / "cnn3_sex.pt"))
    monkeypatch.undo()
    proc = run_script("predict.py", "--model_dir", tmp_path, "--model_file", "cnn3_sex.pt",
                      sorted((sex_data / "AudioWAV").iterdir())[0], check=False,
                      in_process=True)
    assert proc.returncode == 2 and "an unfinished run" in proc.stdout + proc.stderr
