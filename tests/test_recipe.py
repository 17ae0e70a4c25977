"""The accuracy recipe: time-axis pad/crop, fixed dB reference, augmentation, early stopping, selection,
speaker-grouped folds, and the sidecar that lets inference rebuild the exact network input."""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import run_script
from toolkit.audio import MelParams, log_mel, read_image, to_image
from toolkit.augment import Augment, mixup, random_gain, spec_augment
from toolkit.cli import get_args_parser
from toolkit.crossval import fold_splits, speaker_folds
from toolkit.data import ImageSet, batches, input_options, load_images, prepare_image
from toolkit.engine import RunFiles, fit, predict_logits
from toolkit.fileio import read_json, resolve_from_csv


def voice(seconds: float = 1.5, amp: float = 0.1, sr: int = 16000) -> np.ndarray:
    """A buzzy 150 Hz voice with a little noise: energy in many mel bands, like speech."""
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 30))
    y += 0.05 * np.random.default_rng(0).standard_normal(len(t))
    return (amp * y / np.abs(y).max()).astype(np.float32)


# ---- time axis -------------------------------------------------------------------------------------------------

def test_pad_keeps_the_time_scale_and_centres_short_clips():
    image = np.full((180, 40), 200, np.uint8)
    out = prepare_image(image, time_axis="pad", frames=128)
    assert out.shape == (1, 128, 128) and out.dtype == np.uint8
    cols = np.flatnonzero(out[0].any(axis=0))
    assert len(cols) == 40 and cols[0] == 44 and cols[-1] == 83  # 40 frames stay 40 frames, centred, rest silence
    stretched = prepare_image(image)  # the seed's resize: the same clip fills the whole width
    assert stretched.shape == (1, 128, 128) and stretched.min() == 200


def test_pad_crops_long_clips_around_the_centre():
    image = np.tile(np.arange(300) % 256, (128, 1)).astype(np.uint8)  # column value = its index
    out = prepare_image(image, time_axis="pad", frames=128)
    assert out.shape == (1, 128, 128)
    assert list(out[0, 0, [0, -1]]) == [86, 213]  # columns 86..213 of 300: the middle 128


def test_training_windows_are_random_but_keep_short_clips_whole(tmp_path):
    from PIL import Image

    images = [np.full((128, 50), 100, np.uint8), np.tile(np.arange(200) % 250 + 1, (128, 1)).astype(np.uint8)]
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
    pd.DataFrame({"Image_file_path": ["0.png", "1.png"], "sex": ["Male", "Female"]}).to_csv(tmp_path / "s.csv", index=False)
    data = load_images(str(tmp_path / "s.csv"), "sex", time_axis="pad", frames=128)
    assert data.images.shape == (2, 1, 128, 128) and data.lengths.tolist() == [50, 200]
    g = torch.Generator().manual_seed(0)
    seen_short, seen_long = set(), set()
    for _ in range(20):
        x, y = next(batches(data, 2, torch.device("cpu"), g))  # shuffled: the labels say which clip is which
        x = (x[:, 0] * 255).round().to(torch.uint8)  # back to grey levels, one channel
        short, long = x[y.tolist().index(0)], x[y.tolist().index(1)]
        assert int((short[0] > 0).sum()) == 50  # the whole short clip is always inside the window
        seen_short.add(int(np.flatnonzero(short[0].numpy())[0]))
        row = long[0].numpy().astype(int)
        assert (np.diff(row) == 1).all()  # a contiguous 128-frame stretch of the long clip
        seen_long.add(int(row[0]))
    assert len(seen_short) > 5 and len(seen_long) > 5  # it really moves
    x, _ = next(batches(data, 2, torch.device("cpu")))  # no generator: evaluation, the centred windows
    assert torch.equal((x[:, :1] * 255).round().to(torch.uint8), data.images)


# ---- dB reference --------------------------------------------------------------------------------------------

def test_fixed_reference_keeps_the_loudness_of_a_louder_copy():
    fixed, seed = MelParams(db_ref="fixed"), MelParams(db_ref="max")
    quiet, loud = voice(amp=0.02), voice(amp=0.2)  # the same clip 20 dB louder
    q, l = (to_image(log_mel(y, fixed), fixed).astype(int) for y in (quiet, loud))
    both = (q > 0) & (l < 255)  # pixels inside the window in both copies
    assert both.mean() > 0.3
    assert np.median((l - q)[both]) == pytest.approx(20 * 255 / 80, abs=2)  # 20 dB = 64 grey levels brighter
    qs, ls = (to_image(log_mel(y, seed), seed).astype(int) for y in (quiet, loud))
    assert np.abs(ls - qs).max() <= 1  # per-clip maximum: the loudness difference is gone


def test_fixed_reference_values_stay_in_the_documented_range():
    p = MelParams(db_ref="fixed")
    db = log_mel(voice(amp=0.9), p)
    assert db.max() <= 0 and db.min() >= -p.top_db


# ---- augmentation --------------------------------------------------------------------------------------------

def test_augmentations_keep_shapes_and_ranges():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 128, 128) * 0.5 + 0.25
    masked = spec_augment(x, g, time_masks=2, time_width=10, freq_masks=2, freq_width=10)
    assert masked.shape == x.shape and (masked == 0).any() and (masked[masked > 0] == x[masked > 0]).all()
    x[:, :, :, :10] = 0  # padding
    louder = random_gain(x, g, max_db=6, top_db=80)
    assert (louder[:, :, :, :10] == 0).all()  # silence stays silence
    shift = (louder - x)[:, 0, 0, 20]
    assert shift.abs().max() <= 6 / 80 + 1e-6 and shift.abs().min() > 0
    y = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    mixed, target = mixup(x, y, 2, 0.4, g)
    assert mixed.shape == x.shape and torch.allclose(target.sum(1), torch.ones(8))
    assert Augment()(x, y, 2, g)[0] is x  # all off: untouched


def test_recipe_fills_only_unset_flags():
    p = get_args_parser("t", epochs=3)
    seed = p.parse_args(["--recipe", "seed", "--time_masks", "2"])
    assert (seed.time_axis, seed.lr_schedule, seed.patience, seed.time_masks) == ("resize", "none", 0, 2)
    new = p.parse_args([])
    assert new.recipe == "default" and new.time_axis == "pad" and new.patience > 0
    assert p.parse_args(["--weight_decay", "0"]).weight_decay == 0.0


# ---- early stopping and model selection ----------------------------------------------------------------------

def tiny_set(label: int, n: int = 8) -> ImageSet:
    g = torch.Generator().manual_seed(label)
    frame = pd.DataFrame({"ActorID": [1000 + i % 2 for i in range(n)]})
    return ImageSet(torch.randint(0, 255, (n, 1, 8, 8), generator=g, dtype=torch.uint8),
                    torch.full((n,), label), [f"{i}.png" for i in range(n)], frame)


def run_fit(tmp_path, train_step, **flags) -> tuple[dict, dict]:
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    args = argparse.Namespace(epochs=10, batch_size=4, learning_rate=1e-3, seed=0, **flags)
    run = RunFiles(str(tmp_path), "toy")
    results = fit(model, tiny_set(1), tiny_set(1), tiny_set(1), ["a", "b"], args, run, {}, torch.device("cpu"),
                  train_step=lambda m, o, e: train_step(model, e))
    return results, read_json(run.path("_metrics.json"))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # the toy steps never call optimizer.step
def test_early_stopping_keeps_the_best_epoch(tmp_path):
    def worse_every_epoch(model, epoch):  # pushes towards the wrong class: validation loss rises every epoch
        with torch.no_grad():
            model[1].bias += torch.tensor([1.0, -1.0])
        return 0.0

    results, metrics = run_fit(tmp_path, worse_every_epoch, patience=3, select_by="loss")
    assert results["epoch"] == 1 and len(metrics["history"]) == 4  # epoch 1, then 3 without improvement
    kept = torch.load(tmp_path / "toy.pt", weights_only=True)["1.bias"]
    first = metrics["history"][0]["val_loss"]
    assert results["val"]["loss"] == pytest.approx(first, rel=1e-5) and kept.shape == (2,)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # the toy steps never call optimizer.step
def test_selection_ties_go_to_the_later_epoch(tmp_path):
    results, metrics = run_fit(tmp_path, lambda model, epoch: 0.0, patience=3, select_by="f1")
    assert results["epoch"] == 10 and len(metrics["history"]) == 10  # equal F1 every epoch: never stops


# ---- speaker-grouped folds -----------------------------------------------------------------------------------

def test_folds_are_speaker_disjoint_and_test_everyone_once():
    rng = np.random.default_rng(0)
    speakers = np.arange(1001, 1031)
    sex = {s: ("Male" if rng.random() < 0.55 else "Female") for s in speakers}
    frame = pd.DataFrame([{"ActorID": s, "sex": sex[s], "Audio_file_name": f"{s}_{i}.wav"}
                          for s in speakers for i in range(int(rng.integers(5, 12)))])
    folds = speaker_folds(frame, "sex", 5, seed=42)
    tested = [set(frame["ActorID"].iloc[f]) for f in folds]
    assert sum(len(t) for t in tested) == len(speakers) and set().union(*tested) == set(speakers)
    for t in tested:
        assert {sex[s] for s in t} == {"Male", "Female"}  # stratified: both classes in every fold
    for part in fold_splits(frame, "sex", 5, seed=42):
        groups = {k: set(frame["ActorID"].iloc[v]) for k, v in part.items()}
        assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"] and not groups["val"] & groups["test"]
        assert sum(len(v) for v in part.values()) == len(frame)


# ---- end to end: CV and the sidecar that inference reads -----------------------------------------------------

def test_cross_validation_reports_folds_and_speakers(sex_data, tmp_path):
    run_script("train_cnn.py", "--csv_load_path", sex_data, "--category", "sex", "--folds", "2", "--epochs", "1",
               "--batch_size", "16", "--threads", "1", "--model_save_path", tmp_path)
    cv = read_json(tmp_path / "cnn3_sex_cv.json")
    assert set(cv["test"]) == {"accuracy", "f1", "uar"} and len(cv["test"]["f1"]["folds"]) == 2
    speakers = [s for f in cv["fold_results"] for s in f["test_speakers"]]
    assert len(speakers) == len(set(speakers)) == len(cv["pooled_test"]["per_speaker"]) == 8
    assert cv["pooled_test"]["worst_speaker"]["speaker"] in speakers
    assert (tmp_path / "cnn3_sex_cv_speakers.png").is_file() and (tmp_path / "cnn3_sex_cv_folds.png").is_file()


def test_sidecar_reproduces_the_training_input(sex_data, tmp_path):
    """From the JSON alone (as predict.py works), rebuild each test image's network input: same predictions."""
    fixed = sex_data / "fixed"
    run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", sex_data,
               "--save_csv_path", fixed, "--category", "sex", "--db_ref", "fixed", "--workers", "2")
    run_script("train_cnn.py", "--csv_load_path", fixed, "--category", "sex", "--epochs", "2", "--batch_size", "16",
               "--time_axis", "pad", "--threads", "1", "--model_save_path", tmp_path)
    sidecar = read_json(tmp_path / "cnn3_sex.json")
    assert (sidecar["time_axis"], sidecar["frames"], sidecar["image_size"]) == ("pad", 128, [128, 128])
    assert sidecar["spectrogram"]["db_ref"] == "fixed" and sidecar["recipe"]["time_axis"] == "pad"

    from models import build_model
    model = build_model(sidecar["model"], len(sidecar["classes"]))
    model.load_state_dict(torch.load(tmp_path / "cnn3_sex.pt", weights_only=True))
    test_csv = fixed / "sex_test.csv"
    paths = [resolve_from_csv(p, test_csv) for p in pd.read_csv(test_csv)["Image_file_path"]]
    inputs = torch.from_numpy(np.stack([prepare_image(read_image(p), **input_options(sidecar)) for p in paths]))
    probs = torch.softmax(predict_logits(model, inputs, 16, torch.device("cpu")), 1).numpy()
    saved = pd.read_csv(tmp_path / "cnn3_sex_test_predictions.csv")
    assert np.allclose(probs, saved[[f"p_{c}" for c in sidecar["classes"]]].to_numpy(), atol=1e-5)
