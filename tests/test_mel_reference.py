"""The mel path is bit-identical to the version before feature types existed (commit 7eeeb9b): the same PNG bytes
(under names that now also carry a hash of the clip's audio) and, on the CPU with the same seed, the same training losses, metrics and probabilities, for both recipes.
tests/fixtures/mel_reference.json holds the numbers that version produced for these exact runs."""
import hashlib
import json

import pandas as pd

from conftest import ROOT, run_script

REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "mel_reference.json").read_text())
EXACT = ("epoch", "train_loss", "val_accuracy", "val_f1", "val_precision", "val_recall", "val_uar", "val_loss", "lr")


def clip_png_name(png) -> str:
    """'1001_DFA_ANG_XX.3f2a9c1e0b.png' -> '1001_DFA_ANG_XX.png', the name 7eeeb9b gave (before the audio's hash)."""
    return png.name.split(".")[0] + ".png"


def test_stage2_images_are_byte_identical(sex_data):
    pngs = sorted((sex_data / "mel_spectrograms").glob("*/*.png"), key=clip_png_name)
    digest = hashlib.sha256()
    for png in pngs:
        digest.update(clip_png_name(png).encode())
        digest.update(png.read_bytes())
    assert (len(pngs), pngs[0].parent.name, digest.hexdigest()) == (
        REFERENCE["png_count"], REFERENCE["folder"], REFERENCE["png_sha256"])


def history(metrics: dict) -> list[dict]:
    return [{k: row[k] for k in EXACT} for row in metrics["history"]]


def test_default_recipe_training_is_bit_identical(trained_cnn3):
    metrics = json.loads((trained_cnn3 / "cnn3_sex_metrics.json").read_text())
    expected = REFERENCE["default"]
    assert history(metrics) == history(expected)
    assert {k: metrics["metrics"]["test"][k] for k in expected["test"]} == expected["test"]
    assert metrics["metrics"]["epoch"] == expected["epoch"]
    assert pd.read_csv(trained_cnn3 / "cnn3_sex_test_predictions.csv")["p_Male"].tolist() == expected["p_Male"]


def test_seed_recipe_training_is_bit_identical(sex_data, tmp_path):
    run_script("train_cnn.py", "--csv_load_path", sex_data, "--category", "sex", "--model", "cnn3", "--epochs", "1",
               "--batch_size", "16", "--recipe", "seed", "--threads", "1", "--model_save_path", tmp_path)
    metrics = json.loads((tmp_path / "cnn3_sex_metrics.json").read_text())
    expected = REFERENCE["seed"]
    assert history(metrics) == history(expected)
    assert {k: metrics["metrics"]["test"][k] for k in expected["test"]} == expected["test"]
