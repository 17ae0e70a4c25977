"""Stage 5: the alpha schedule, eval-mode pseudo-labels, the unlabeled CSV in both forms, the run end to end."""
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import conftest


def run_script(script: str, *args, check: bool = True):
    """The stage's main() in-process, through its script's run_main wrapper (conftest.run_script)."""
    return conftest.run_script(script, *args, check=check, in_process=True)
from models import CNN3
from toolkit.config import RECIPES
from toolkit.errors import ToolkitError
from toolkit.features.mel import Mel
from toolkit.runcard import RunCard
from toolkit.training.data import FeatureSet, load_split
from toolkit.training.pseudo import LABELED_EVERY, alpha_weight, labeled_passes_per_epoch, load_unlabeled, make_train_step, pseudo_label


@pytest.mark.parametrize("step, alpha", [(0, 0.0), (99, 0.0), (100, 0.0), (101, 0.5 / 600), (400, 0.25),
                                         (699, 0.5 * 599 / 600), (700, 0.5), (701, 0.5), (10_000, 0.5)])
def test_alpha_is_zero_before_T1_linear_to_T2_then_af(step, alpha):
    assert alpha_weight(step, T1=100, T2=700, af=0.5) == pytest.approx(alpha)


def test_one_labeled_pass_per_25_unlabeled_batches_counting_the_first():
    assert LABELED_EVERY == 25
    assert labeled_passes_per_epoch(64, 64) == 1  # batch 0 only
    assert labeled_passes_per_epoch(25 * 64, 64) == 1  # batches 0..24
    assert labeled_passes_per_epoch(25 * 64 + 1, 64) == 2  # batch 25 too
    assert labeled_passes_per_epoch(51 * 64, 64) == 3


def bn_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def test_pseudo_labels_come_from_eval_mode_and_leave_batchnorm_alone():
    torch.manual_seed(0)
    model = CNN3(2)
    model.train()
    model(torch.rand(8, 3, 128, 128))  # running statistics away from their initial values
    x = torch.rand(6, 3, 128, 128) * 3  # other statistics than the warm-up batch: train mode would give other logits
    before = bn_buffers(model)
    labels, keep = pseudo_label(model, x)
    after = bn_buffers(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        eval_logits = model.eval()(x)
    assert torch.equal(labels, eval_logits.argmax(1)) and keep.all()
    confidence = torch.softmax(eval_logits, 1).max(1).values
    threshold = float(confidence.median())
    assert torch.equal(pseudo_label(model, x, threshold)[1], confidence >= threshold)
    model.train()
    with torch.no_grad():
        model(x)  # the same batch in train mode does move them: the check above can fail
    assert not torch.equal(before["encoder.conv.3.running_mean"], bn_buffers(model)["encoder.conv.3.running_mean"])


def image_set(n, labels=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 128, 128), dtype=torch.uint8, generator=g)
    labels = torch.full((n,), -1) if labels is None else torch.as_tensor(labels)
    return FeatureSet(images, labels.long(), [f"{i}.png" for i in range(n)], pd.DataFrame({"i": range(n)}), Mel())


def test_train_step_advances_step_once_per_labeled_pass_and_skips_zero_alpha():
    torch.manual_seed(0)
    model = CNN3(2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train, unlabeled = image_set(4, [0, 1, 0, 1]), image_set(52, seed=1)  # 26 batches of 2: passes after 0 and 25
    step = make_train_step(train, unlabeled, 2, torch.device("cpu"), seed=0, T1=3, T2=5, af=0.5, start_step=1)
    first = step.run_epoch(model, optimizer, 1, None)
    assert first["step"] == 3 and first["alpha"] == 0.0 and first["pseudo_used"] == 0  # steps 1, 2: alpha 0
    second = step.run_epoch(model, optimizer, 2, None)  # steps 3 (alpha 0: batches 0) then 4 (alpha 0.25: batches 1..25)
    assert second["step"] == 5 and second["alpha"] == 0.5 and second["pseudo_used"] == 50
    assert second["pseudo_kept_share"] == 1.0 and second["unlabeled_loss"] > 0
    assert np.isfinite(second["train_loss"])
    # The step count follows from the epoch, so a resumed run (a fresh train step) continues the ramp.
    assert make_train_step(train, unlabeled, 2, torch.device("cpu"), 0, 3, 5, 0.5, 1).run_epoch(model, optimizer, 2, None)["step"] == 5


@pytest.mark.parametrize("rated, kept_epoch", [(0.5, 0), (0.9, 2)], ids=["worse: start kept", "as high: later epoch"])
def test_the_starting_model_is_epoch_zero_of_the_choice(tmp_path, rated, kept_epoch):
    """Stage 5 never saves a model that validation rates below the one it started from: the starting weights stay
    (and are the run's .pt) unless an epoch scores at least as high as they did (0.9 here)."""
    from dataclasses import replace

    from toolkit.training.engine import RunFiles, train_loop
    from toolkit.training.pseudo import StartingModelIsEpochZero

    model = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def step(net, optimizer, epoch, generator):  # every epoch moves the weights
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
        return 0.0

    run = RunFiles(str(tmp_path), "pl")
    state = train_loop(model, replace(RECIPES["seed"], epochs=2), run, torch.device("cpu"), step,
                       validate=lambda net: {"f1": rated, "loss": 1.0}, callbacks=[StartingModelIsEpochZero((0.9, 0.0))])
    assert state.best_epoch == kept_epoch
    for k, v in start.items():  # the kept epoch's weights are the model's: epoch 2 moved them by 2
        assert torch.allclose(model.state_dict()[k], v + kept_epoch)
    if kept_epoch == 0:
        saved = torch.load(run.weights, weights_only=True)
        assert all(torch.equal(saved[k], v) for k, v in start.items())


@pytest.fixture()
def unlabeled_csvs(sex_data, tmp_path):
    """The test split's clips without labels, once as audio and once as stage-2 images (paths relative to the CSV)."""
    test = pd.read_csv(sex_data / "sex_test.csv")
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    audio = [str((sex_data / p).resolve()) for p in test["Audio_file_path"]]
    images = [str((sex_data / p).resolve()) for p in test["Image_file_path"]]
    pd.DataFrame({"Audio_file_path": [os.path.relpath(p, folder) for p in audio]}).to_csv(folder / "audio.csv", index=False)
    pd.DataFrame({"Image_file_path": [os.path.relpath(p, folder) for p in images]}).to_csv(folder / "images.csv", index=False)
    return folder


def card_of(data: FeatureSet) -> RunCard:
    """The run card of a model trained on features made like `data`'s."""
    return RunCard(model="cnn3", category="sex", classes=["Male", "Female"],
                   features={"type": data.feature.name, "params": data.params, "stats": None},
                   input={"kind": data.feature.kind, "shape": data.input_shape(), **data.options})


@pytest.mark.parametrize("inputs", [{}, {"time_axis": "pad", "frames": 100}], ids=["resize", "pad"])
def test_unlabeled_audio_gives_the_same_inputs_as_stage_2_images(sex_data, unlabeled_csvs, inputs):
    from dataclasses import replace

    labeled = load_split(str(sex_data / "sex_test.csv"), "sex", replace(RECIPES["seed"], **inputs))
    assert labeled.params  # params.json beside the stage-2 images
    from_audio = load_unlabeled(str(unlabeled_csvs / "audio.csv"), card_of(labeled))
    from_images = load_unlabeled(str(unlabeled_csvs / "images.csv"), card_of(labeled))
    assert torch.equal(from_audio.x, labeled.x[:]) and torch.equal(from_images.x, labeled.x[:])
    assert (from_audio.labels == -1).all() and (from_images.labels == -1).all()


def test_unusable_unlabeled_rows_are_left_out_and_none_usable_is_an_error(sex_data, unlabeled_csvs, tmp_path):
    params = card_of(load_split(str(sex_data / "sex_test.csv"), "sex", RECIPES["seed"]))
    audio = pd.read_csv(unlabeled_csvs / "audio.csv")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"")
    some = unlabeled_csvs / "some.csv"  # beside audio.csv: its paths are relative to that folder
    pd.concat([audio, pd.DataFrame({"Audio_file_path": [str(bad), "missing.wav"]})]).to_csv(some, index=False)
    assert len(load_unlabeled(str(some), params)) == len(audio)
    pd.DataFrame({"Audio_file_path": [str(bad), "missing.wav"]}).to_csv(tmp_path / "none.csv", index=False)
    with pytest.raises(ToolkitError, match="none.csv: none of its 2 clips could be used"):
        load_unlabeled(str(tmp_path / "none.csv"), params)
    pd.DataFrame({"ActorID": [1]}).to_csv(tmp_path / "columns.csv", index=False)
    with pytest.raises(ToolkitError, match="columns.csv: needs an Audio_file_path or Image_file_path column"):
        load_unlabeled(str(tmp_path / "columns.csv"), params)


@pytest.fixture()
def start_model(trained_cnn3, tmp_path):
    """A private copy of the stage-3 model, so this stage's outputs do not land in the shared fixture's folder."""
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("cnn3_sex.pt", "cnn3_sex.json"):
        shutil.copy(trained_cnn3 / name, folder / name)
    return folder


def test_end_to_end_writes_the_pl_model_and_its_before_after_json(sex_data, unlabeled_csvs, start_model):
    started = (start_model / "cnn3_sex.pt").read_bytes()
    proc = run_script("pseudo_labeling_semisupervised.py", "--csv_load_path", sex_data, "--category", "sex",
                      "--unlabeled_csv", unlabeled_csvs / "audio.csv", "--epochs", "2", "--batch_size", "16",
                      "--model", "cnn3", "--cnn_param_file", "cnn3_sex.pt", "--pseudolabeling_param_file", "cnn3_sex_PL.pt",
                      "--model_save_and_load_path", start_model, "--T1", "0", "--T2", "2", "--threads", "1", "--workers", "1")
    assert (start_model / "cnn3_sex.pt").read_bytes() == started
    state = torch.load(start_model / "cnn3_sex_PL.pt", weights_only=True)
    CNN3(2).load_state_dict(state)
    for suffix in ("_metrics.csv", "_confusion_matrix.png", "_training_curves.png", "_test_predictions.csv"):
        assert (start_model / f"cnn3_sex_PL{suffix}").is_file()
    card = json.loads((start_model / "cnn3_sex_PL.json").read_text())
    assert card["model"] == "cnn3" and card["init"] == ["scratch", "pseudo-label"]
    assert card["training"]["pseudo_labeling"]["T2"] == 2 and card["training"]["pseudo_labeling"]["unlabeled_clips"] == 24
    assert card["init_detail"]["started_from"] == str(start_model / "cnn3_sex.pt")

    history = pd.read_csv(start_model / "cnn3_sex_PL_metrics.csv")
    # 24 clips = 2 batches of 16: one labeled pass per epoch, step 0 -> 1 -> 2, alpha(1) = 0.25, alpha(2) = 0.5
    assert history["step"].tolist() == [1, 2] and history["alpha"].tolist() == [0.25, 0.5]
    assert history["pseudo_used"].tolist() == [8, 24]

    comparison = json.loads((start_model / "cnn3_sex_PL_comparison.json").read_text())
    before = json.loads((start_model / "cnn3_sex.json").read_text())["metrics"]["test"]
    for metric in ("accuracy", "f1", "loss"):
        row = comparison["test"][metric]
        assert row["before"] == pytest.approx(before[metric])  # the starting model's own test score
        assert row["after"] == pytest.approx(card["metrics"]["test"][metric])
        assert row["change"] == pytest.approx(row["after"] - row["before"])
    assert comparison["best_epoch"] == card["metrics"]["epoch"] and sum(comparison["starting_pseudo_labels"].values()) == 24
    assert "before" in proc.stdout and f"{comparison['test']['f1']['after']:.4f}" in proc.stdout
    # the fixture's unlabeled clips are the test split's own: the run says so (and not about validation)
    assert "warning: 24 unlabeled clip(s) are also in the test set" in proc.stdout and "validation set" not in proc.stdout

    # --resume continues the ramp where it stopped: step follows from the epoch, not from a counter in memory.
    run_script("pseudo_labeling_semisupervised.py", *proc.args[2:], "--epochs", "3", "--resume")
    resumed = pd.read_csv(start_model / "cnn3_sex_PL_metrics.csv")
    assert resumed["step"].tolist() == [1, 2, 3] and resumed["alpha"].tolist() == [0.25, 0.5, 0.5]
    pd.testing.assert_frame_equal(resumed.iloc[:2], history)


@pytest.mark.parametrize("problem, message", [
    ("empty", "unlabeled.csv: the CSV has no rows"),
    ("unusable", "unlabeled.csv: none of its 1 clips could be used"),
    ("model", "cnn3_sex.pt: a cnn3 model for sex"),
])
def test_bad_input_is_a_one_line_error(sex_data, start_model, tmp_path, problem, message):
    unlabeled = tmp_path / "unlabeled.csv"
    unlabeled.write_text("Audio_file_path\n" + ("" if problem == "empty" else "no_such_clip.wav\n"))
    if problem == "model":
        unlabeled = sex_data / "sex_test.csv"  # usable: the run must stop at the checkpoint before reading it
    proc = run_script("pseudo_labeling_semisupervised.py", "--csv_load_path", sex_data, "--category", "sex",
                      "--unlabeled_csv", unlabeled, "--model", "resnet18" if problem == "model" else "cnn3",
                      "--cnn_param_file", "cnn3_sex.pt", "--model_save_and_load_path", start_model, "--epochs", "1",
                      "--threads", "1", "--workers", "1", check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (start_model / "resnet18_sex_PL.pt").exists() and not (start_model / "cnn3_sex_PL.pt").exists()
