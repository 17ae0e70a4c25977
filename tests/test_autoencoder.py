"""Stage 4: autoencoder pre-training (4a), its reload check (4b) and the classifier built on its encoder (4c)."""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

import conftest


def run_script(script: str, *args, check: bool = True):
    """The stage's main() in-process, through its script's run_main wrapper (conftest.run_script)."""
    return conftest.run_script(script, *args, check=check, in_process=True)
from models import CNN9, AutoEncoder, build_model
from toolkit.training.autoencoding import DECODER_FILE, ENCODER_FILE, STEM

AE_ARGS = ("--category", "sex", "--train_csv", "sex_train.csv", "--batch_size", "16", "--learning_rate", "1e-3", "--threads", "1")


def test_autoencoder_output_shape_equals_input_shape():
    x = torch.rand(2, 3, 128, 128)
    model = AutoEncoder().eval()
    with torch.no_grad():
        out = model(x)
        code = model.encoder(x)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1  # the same range as the input images
    assert code.shape == (2, 64)


@pytest.fixture(scope="module")
def autoencoder(sex_data: Path, tmp_path_factory) -> Path:
    """Stage 4a, 4 epochs on the tiny corpus: the folder holding encoder/decoder_3_layers.pt and the JSON."""
    folder = tmp_path_factory.mktemp("autoencoder")
    run_script("train_autoencoder.py", "--csv_load_path", sex_data, *AE_ARGS, "--epochs", "4", "--model_save_path", folder)
    return folder


def test_training_saves_weights_loss_and_plots(autoencoder):
    for name in (ENCODER_FILE, DECODER_FILE, f"{STEM}_loss_curve.png", f"{STEM}_reconstructions.png"):
        assert (autoencoder / name).stat().st_size > 0, name
    model = AutoEncoder()
    model.encoder.load_state_dict(torch.load(autoencoder / ENCODER_FILE, weights_only=True), strict=True)
    model.decoder.load_state_dict(torch.load(autoencoder / DECODER_FILE, weights_only=True), strict=True)
    card = json.loads((autoencoder / f"{STEM}.json").read_text())
    assert card["model"] == "autoencoder" and card["classes"] == [] and card["schema"] == 1
    assert card["metrics"]["epochs"] == 4 and card["metrics"]["images"] > 0 and 0 < card["metrics"]["loss"] < 1
    assert card["features"]["params"]["n_mels"] == 180


def test_training_loss_falls(autoencoder):
    losses = pd.read_csv(autoencoder / f"{STEM}_metrics.csv")["train_loss"].tolist()
    assert len(losses) == 4
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.9 * losses[0], losses


def test_resume_continues_to_the_same_result(autoencoder, sex_data, tmp_path):
    run_script("train_autoencoder.py", "--csv_load_path", sex_data, *AE_ARGS, "--epochs", "2", "--model_save_path", tmp_path)
    proc = run_script("train_autoencoder.py", "--csv_load_path", sex_data, *AE_ARGS, "--epochs", "4", "--resume",
                      "--model_save_path", tmp_path)
    assert "resuming" in proc.stdout
    resumed = json.loads((tmp_path / f"{STEM}.json").read_text())["metrics"]["loss"]
    straight = json.loads((autoencoder / f"{STEM}.json").read_text())["metrics"]["loss"]
    assert resumed == pytest.approx(straight, rel=1e-6)


def test_end_to_end_4a_4b_4c(autoencoder, sex_data):
    """The seed README's commands: 4a (the fixture), then 4b and 4c as subprocesses."""
    weights = {name: (autoencoder / name).read_bytes() for name in (ENCODER_FILE, DECODER_FILE)}
    proc = run_script("testing_autoencoder.py", "--csv_load_path", sex_data, *AE_ARGS, "--epochs", "5",
                      "--model_load_path", autoencoder)
    assert "OK" in proc.stdout
    check = json.loads((autoencoder / f"{STEM}_reloaded.json").read_text())
    saved = json.loads((autoencoder / f"{STEM}.json").read_text())["metrics"]["loss"]
    assert check["passed"] and check["loss"] == pytest.approx(saved, rel=1e-5)
    assert (autoencoder / f"{STEM}_reloaded_reconstructions.png").stat().st_size > 0
    assert weights == {name: (autoencoder / name).read_bytes() for name in weights}  # testing trained nothing

    run_script("cnn_classifier.py", "--csv_load_path", sex_data, "--category", "sex", "--train_csv", "sex_train.csv",
               "--val_csv", "sex_val.csv", "--test_csv", "sex_test.csv", "--epochs", "2", "--batch_size", "16",
               "--learning_rate", "1e-3", "--model_load_and_save_path", autoencoder, "--threads", "1")
    card = json.loads((autoencoder / "cnn3_ae_sex.json").read_text())
    assert card["model"] == "cnn3" and card["classes"] == ["Male", "Female"] and 1 <= card["metrics"]["epoch"] <= 2
    assert card["init"] == ["autoencoder"] and card["init_detail"]["encoder_file"].endswith("encoder_3_layers.pt")
    assert {"accuracy", "f1", "precision", "recall", "confusion_matrix"} <= set(card["metrics"]["test"])
    for suffix in ("_metrics.csv", "_metrics.json", "_confusion_matrix.png", "_training_curves.png", "_test_predictions.csv"):
        assert (autoencoder / f"cnn3_ae_sex{suffix}").is_file(), suffix
    build_model("cnn3", 2).load_state_dict(torch.load(autoencoder / "cnn3_ae_sex.pt", weights_only=True), strict=True)


def test_testing_fails_when_the_loss_is_not_reproduced(autoencoder, sex_data, tmp_path):
    for name in (ENCODER_FILE, DECODER_FILE, f"{STEM}.json"):
        shutil.copy(autoencoder / name, tmp_path / name)
    card = json.loads((tmp_path / f"{STEM}.json").read_text())
    card["metrics"]["loss"] *= 1.001
    (tmp_path / f"{STEM}.json").write_text(json.dumps(card))
    proc = run_script("testing_autoencoder.py", "--csv_load_path", sex_data, *AE_ARGS, "--model_load_path", tmp_path, check=False)
    assert proc.returncode == 1 and "FAILED" in proc.stderr
    assert json.loads((tmp_path / f"{STEM}_reloaded.json").read_text())["passed"] is False


def test_classifier_starts_from_the_saved_encoder(autoencoder, sex_data, monkeypatch):
    import cnn_classifier
    import toolkit.training.engine

    seen = {}  # (Stage.fit calls the engine's fit)
    monkeypatch.setattr(toolkit.training.engine, "fit", lambda model, *args, **kw: seen.update(model.encoder.state_dict()))
    cnn_classifier.main(["--csv_load_path", str(sex_data), "--category", "sex", "--model_save_and_load_path", str(autoencoder),
                         "--threads", "1"])
    saved = torch.load(autoencoder / ENCODER_FILE, weights_only=True)
    assert seen.keys() == saved.keys()
    assert all(torch.equal(seen[k], saved[k]) for k in saved)


def test_frozen_encoder_stays_as_pretrained(autoencoder, sex_data, tmp_path):
    shutil.copy(autoencoder / ENCODER_FILE, tmp_path / ENCODER_FILE)
    run_script("cnn_classifier.py", "--csv_load_path", sex_data, "--category", "sex", "--epochs", "1", "--batch_size", "16",
               "--freeze_encoder", "--model_save_and_load_path", tmp_path, "--threads", "1")
    trained = torch.load(tmp_path / "cnn3_ae_sex.pt", weights_only=True)
    saved = torch.load(tmp_path / ENCODER_FILE, weights_only=True)
    # weights and BatchNorm running statistics alike: a frozen encoder is never in training mode
    assert all(torch.equal(trained[f"encoder.{k}"], v) for k, v in saved.items())


@pytest.mark.parametrize("script, flag, bad_file", [
    ("cnn_classifier.py", "--model_save_and_load_path", ENCODER_FILE),
    ("testing_autoencoder.py", "--model_load_path", DECODER_FILE),
])
def test_mismatched_checkpoint_is_a_one_line_error(autoencoder, sex_data, tmp_path, script, flag, bad_file):
    for name in (ENCODER_FILE, DECODER_FILE, f"{STEM}.json"):
        shutil.copy(autoencoder / name, tmp_path / name)
    torch.save(CNN9(2).state_dict(), tmp_path / bad_file)  # a real state dict, of the wrong network
    proc = run_script(script, "--csv_load_path", sex_data, "--category", "sex", "--epochs", "1", flag, tmp_path, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(tmp_path / bad_file) in lines[0]


def test_the_loss_curve_marks_whole_epochs(tmp_path, monkeypatch):
    import toolkit.training.autoencoding as autoencoding

    figures = []
    monkeypatch.setattr(autoencoding, "save_figure", lambda fig, path: figures.append(fig))
    autoencoding.plot_loss_curve([{"epoch": e, "train_loss": 1 / e} for e in (1, 2, 3)], str(tmp_path / "curve.png"))
    ax = figures[0].axes[0]
    low, high = ax.get_xlim()
    shown = [t for t in ax.get_xticks() if low <= t <= high]
    assert shown and all(float(t).is_integer() for t in shown)
