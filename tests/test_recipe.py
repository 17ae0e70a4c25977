"""The accuracy recipe: time-axis pad/crop, fixed dB reference, augmentation, early stopping, selection,
speaker-grouped folds, and the run card that lets inference rebuild the exact network input."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import run_script
from toolkit.augmentation.augment import Augment, mixup, random_gain, spec_augment
from toolkit.cli import get_args_parser
from toolkit.config import RECIPES, train_config
from toolkit.features.base import FeatureType
from toolkit.features.mel import MelParams, log_mel, prepare_image, to_image
from toolkit.fileio import read_json
from toolkit.runcard import RunCard
from toolkit.training.crossval import fold_splits, speaker_folds
from toolkit.training.data import FeatureSet, batches, load_split
from toolkit.training.engine import RunFiles, Schedule, fit, train_batches


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
    data = load_split(str(tmp_path / "s.csv"), "sex", replace(RECIPES["seed"], time_axis="pad", frames=128))
    assert data.x.shape == (2, 1, 128, 128) and data.extra["lengths"].tolist() == [50, 200]
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
    assert torch.equal((x[:, :1] * 255).round().to(torch.uint8), data.x)


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
    seed = train_config(p.parse_args(["--recipe", "seed", "--time_masks", "2"]))
    assert seed == replace(RECIPES["seed"], epochs=3, time_masks=2)
    new = train_config(p.parse_args([]))
    assert new == replace(RECIPES["default"], epochs=3) and new.time_axis == "pad" and new.patience > 0
    assert train_config(p.parse_args(["--weight_decay", "0"])).weight_decay == 0.0


def test_help_shows_the_real_defaults():
    text = get_args_parser("t", epochs=3).format_help()
    assert "(default: None)" not in text and "(default: True)" not in text and "(default: False)" not in text
    flat = " ".join(text.split())
    assert "(default: pad; --recipe seed: resize)" in flat and "(default: 2; --recipe seed: 0; --recipe frame_mlp: 0)" in flat
    assert "(default: 3)" in flat  # --epochs: the stage's own default


def test_accumulated_batches_step_like_one_batch_of_their_size():
    torch.manual_seed(0)
    x, y = torch.randn(8, 6), torch.tensor([0, 1] * 4)
    one, two = nn.Linear(6, 2), nn.Linear(6, 2)
    two.load_state_dict(one.state_dict())
    for model, parts, accumulate in ((one, 1, 1), (two, 2, 2)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        batches = list(zip(x.chunk(parts), y.chunk(parts)))
        train_batches(model, optimizer, batches, torch.device("cpu"), accumulate=accumulate)
    assert torch.allclose(one.weight, two.weight, atol=1e-6) and not torch.equal(one.weight, nn.Linear(6, 2).weight)


def test_linear_schedule_per_epoch_warms_up_then_falls_in_a_straight_line():
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    schedule = Schedule(optimizer, replace(RECIPES["default"], lr_schedule="linear", epochs=10, warmup=0.2))
    lrs = [schedule.begin_epoch(done) for done in range(10)]
    assert lrs == pytest.approx([1 / 3, 2 / 3, 1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])


# ---- early stopping and model selection ----------------------------------------------------------------------

class Toy(FeatureType):
    """A vector feature with no files, for driving the engine directly."""
    name = "toy"


def tiny_set(label: int, n: int = 8) -> FeatureSet:
    g = torch.Generator().manual_seed(label)
    frame = pd.DataFrame({"ActorID": [1000 + i % 2 for i in range(n)]})
    return FeatureSet(torch.rand(n, 6, generator=g), torch.full((n,), label), [f"{i}.npy" for i in range(n)], frame, Toy())


def run_fit(tmp_path, train_step, **flags) -> tuple[dict, dict]:
    model = nn.Linear(6, 2)
    config = replace(RECIPES["seed"], epochs=10, batch_size=4, seed=0, **flags)
    run = RunFiles(str(tmp_path), "toy")
    card = RunCard(model="linear", category="c", classes=["a", "b"], features={"type": "mel"}, input={"kind": "vector"})
    card = fit(model, tiny_set(1), tiny_set(1), tiny_set(1), config, run, card, torch.device("cpu"),
               train_step=lambda m, o, e, g: train_step(model, e))
    return card.metrics, read_json(run.path("_metrics.json"))


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    def worse_every_epoch(model, epoch):  # pushes towards the wrong class: validation loss rises every epoch
        with torch.no_grad():
            model.bias += torch.tensor([1.0, -1.0])
        return 0.0

    results, metrics = run_fit(tmp_path, worse_every_epoch, patience=3, select_by="loss")
    assert results["epoch"] == 1 and len(metrics["history"]) == 4  # epoch 1, then 3 without improvement
    kept = torch.load(tmp_path / "toy.pt", weights_only=True)["bias"]
    first = metrics["history"][0]["val_loss"]
    assert results["val"]["loss"] == pytest.approx(first, rel=1e-5) and kept.shape == (2,)


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


# ---- end to end: CV and the run card that inference reads -----------------------------------------------------

def test_cross_validation_reports_folds_and_speakers(sex_data, tmp_path):
    run_script("train_cnn.py", "--csv_load_path", sex_data, "--category", "sex", "--folds", "2", "--epochs", "1",
               "--batch_size", "16", "--threads", "1", "--model_save_path", tmp_path, in_process=True)
    cv = read_json(tmp_path / "cnn3_sex_cv.json")
    assert set(cv["test"]) == {"accuracy", "f1", "uar", "ece"} and len(cv["test"]["f1"]["folds"]) == 2
    speakers = [s for f in cv["fold_results"] for s in f["test_speakers"]]
    assert len(speakers) == len(set(speakers)) == len(cv["pooled_test"]["per_speaker"]) == 8
    assert cv["pooled_test"]["worst_speaker"]["speaker"] in speakers
    assert (tmp_path / "cnn3_sex_cv_speakers.png").is_file() and (tmp_path / "cnn3_sex_cv_folds.png").is_file()


def test_run_card_reproduces_the_training_input(sex_data, trained_cnn3):
    """From the run card alone (as predict.py works), rebuild each test image's network input: same predictions."""
    from toolkit.training.engine import evaluate
    from models import load_trained_model

    model, card = load_trained_model(str(trained_cnn3 / "cnn3_sex.pt"))
    assert card.input_options == {"image_size": [128, 128], "time_axis": "pad", "frames": 128}
    assert card.features["params"]["db_ref"] == "fixed" and card.training["time_axis"] == "pad"
    test = load_split(str(sex_data / "sex_test.csv"), "sex", options=card.input_options, classes=card.classes)
    test.stats = card.features["stats"]
    windows = card.training["eval_windows"] == "all"  # long clips scored on all their windows, as predict.py does
    probs = evaluate(model, test, 5, torch.device("cpu"), len(card.classes), windows, card.temperature)["probabilities"]
    saved = pd.read_csv(trained_cnn3 / "cnn3_sex_test_predictions.csv")
    assert np.allclose(probs, saved[[f"p_{c}" for c in card.classes]].to_numpy(), atol=1e-5)
