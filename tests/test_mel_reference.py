"""The mel path is unchanged since the version before feature types existed (commit 7eeeb9b).

tests/fixtures/mel_reference.json holds what that version produced for these exact runs: the stage-2 images and,
on the CPU with the same seed, the training losses, metrics and probabilities of both recipes. Floating-point
results depend on the CPU's vector instructions (numpy, librosa and torch pick AVX-512, AVX2 or plain paths at run
time), so each run is compared two ways:
- within tolerances that hold across CPUs, on any machine: pixels within a couple of grey levels, losses and
  probabilities within a relative tolerance (measured: AVX-512 vs AVX2 vs plain paths differ by at most one grey
  level in one pixel of 1.4 M, and by 0.3 % in a validation loss);
- byte for byte, only on a machine the fixture has a record for (`machines`: what 7eeeb9b itself gave there, with
  that machine's instruction sets and library versions); elsewhere that check is skipped, saying why.
To try other paths on one machine: NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR" (numpy >= 2.4's names
for its AVX-512 paths; "X86_V3" also drops AVX2; older numpy: "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL
AVX512_ICL") and ATEN_CPU_CAPABILITY=default for torch.
"""
import hashlib
import json
import platform

import numpy as np
import pandas as pd
import PIL
import pytest
from PIL import Image

from conftest import ROOT, run_script

FIXTURES = ROOT / "tests" / "fixtures"
REFERENCE = json.loads((FIXTURES / "mel_reference.json").read_text())
ORIGINAL = REFERENCE["machines"][0]  # the numbers 7eeeb9b first produced: the reference for the tolerances
EXACT = ("epoch", "train_loss", "val_accuracy", "val_f1", "val_precision", "val_recall", "val_uar", "val_loss", "lr")
GREY_LEVELS = 2  # the most a pixel may differ across CPUs
DIFFERING_PIXELS = 0.005  # the largest share of pixels that may differ at all
RELATIVE = 1e-2  # for losses and metrics (a 0.3 % difference measured)
PROBABILITY = 5e-3  # for test probabilities (0.0008 measured)
SEED_KEY = "seed" if int(PIL.__version__.split(".")[0]) >= 13 else "seed_pillow12"  # Pillow 13 changed bilinear rounding


def this_machine() -> dict:
    """What decides the floating-point paths: the vector instruction sets numpy uses (NPY_DISABLE_CPU_FEATURES
    switches some off), torch's kernel level (ATEN_CPU_CAPABILITY), and the libraries' versions."""
    import librosa
    import scipy
    import torch
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__
    return {"arch": platform.machine(), "simd": sorted(k for k, v in __cpu_features__.items() if v),
            "torch_cpu": torch.backends.cpu.get_cpu_capability(), "numpy": np.__version__, "scipy": scipy.__version__,
            "librosa": librosa.__version__, "torch": torch.__version__, "Pillow": PIL.__version__}


def record_for_this_machine(key: str) -> dict:
    machine = this_machine()
    for record in REFERENCE["machines"]:
        if record["machine"] == machine and key in record:
            return record
    pytest.skip(f"byte identity is checked only on a machine with a record in mel_reference.json; this one "
                f"({machine['arch']}, {machine['torch_cpu']}, numpy {machine['numpy']}) has none: the tolerance tests ran")


def clip_png_name(png) -> str:
    """'1001_DFA_ANG_XX.3f2a9c1e0b.png' -> '1001_DFA_ANG_XX.png', the name 7eeeb9b gave (before the audio's hash)."""
    return png.name.split(".")[0] + ".png"


@pytest.fixture(scope="module")
def pngs(sex_data) -> dict:
    found = sorted((sex_data / "mel_spectrograms").glob("*/*.png"), key=clip_png_name)
    assert (len(found), found[0].parent.name) == (REFERENCE["png_count"], REFERENCE["folder"])
    return {clip_png_name(p): p for p in found}


def test_stage2_images_match_within_grey_levels(pngs):
    assert sorted(pngs) == sorted(REFERENCE["mean_grey"])
    means = {name: float(np.asarray(Image.open(p)).mean()) for name, p in pngs.items()}
    assert means == pytest.approx(REFERENCE["mean_grey"], abs=0.05)
    strip = np.asarray(Image.open(FIXTURES / REFERENCE["pixels"]["file"])).astype(int)
    start = 0
    for name, width in REFERENCE["pixels"]["images"]:
        expected, start = strip[:, start:start + width], start + width
        got = np.asarray(Image.open(pngs[name])).astype(int)
        assert got.shape == expected.shape, name
        difference = np.abs(got - expected)
        assert difference.max() <= GREY_LEVELS and (difference > 0).mean() <= DIFFERING_PIXELS, name


def test_stage2_images_are_byte_identical_on_a_recorded_machine(pngs):
    record = record_for_this_machine("png_sha256")
    digest = hashlib.sha256()
    for name, png in pngs.items():
        digest.update(name.encode())
        digest.update(png.read_bytes())
    assert digest.hexdigest() == record["png_sha256"]


def history(metrics: dict) -> list[dict]:
    return [{k: row[k] for k in EXACT} for row in metrics["history"]]


@pytest.fixture(scope="module")
def reference_split(sex_data, tmp_path_factory):
    """The split 7eeeb9b made of the session corpus (stage 2 now also gives the validation part both sexes, so the
    split itself changed): the same rows, in the same order, pointing at today's images."""
    folder = tmp_path_factory.mktemp("reference_split")
    rows = pd.concat([pd.read_csv(sex_data / f"sex_{s}.csv") for s in ("train", "val", "test")]).set_index("Audio_file_name")
    rows["Image_file_path"] = [str((sex_data / p).resolve()) for p in rows["Image_file_path"]]
    for part, names in json.loads((FIXTURES / "mel_reference_split.json").read_text()).items():
        rows.loc[names].reset_index().to_csv(folder / f"sex_{part}.csv", index=False)
    return folder


def train(folder, models, *flags) -> tuple[dict, list[float]]:
    run_script("train_cnn.py", "--csv_load_path", folder, "--category", "sex", "--model", "cnn3", "--batch_size", "16",
               "--model_save_path", models, *flags)
    metrics = json.loads((models / "cnn3_sex_metrics.json").read_text())
    return metrics, pd.read_csv(models / "cnn3_sex_test_predictions.csv")["p_Male"].tolist()


@pytest.fixture(scope="module")
def default_run(reference_split, tmp_path_factory):
    # the two later additions off: scoring long clips on all their windows, and calibration
    return train(reference_split, tmp_path_factory.mktemp("default"), "--epochs", "2", "--eval_windows", "center",
                 "--calibration", "none")


@pytest.fixture(scope="module")
def seed_run(reference_split, tmp_path_factory):
    return train(reference_split, tmp_path_factory.mktemp("seed"), "--epochs", "1", "--recipe", "seed", "--threads", "1")


def approx(reference):
    return pytest.approx(reference, rel=RELATIVE, abs=1e-9)


@pytest.mark.parametrize("recipe", ["default", SEED_KEY])
def test_training_matches_within_tolerance(recipe, default_run, seed_run):
    (metrics, p_male), expected = (default_run if recipe == "default" else seed_run), ORIGINAL[recipe]
    assert history(metrics) == [approx(row) for row in history(expected)]
    assert {k: metrics["metrics"]["test"][k] for k in expected["test"]} == approx(expected["test"])
    if recipe == "default":
        assert metrics["metrics"]["epoch"] == expected["epoch"]
        assert p_male == pytest.approx(expected["p_Male"], abs=PROBABILITY)


@pytest.mark.parametrize("recipe", ["default", SEED_KEY])
def test_training_is_bit_identical_on_a_recorded_machine(recipe, default_run, seed_run):
    expected = record_for_this_machine(recipe)[recipe]
    metrics, p_male = default_run if recipe == "default" else seed_run
    assert history(metrics) == history(expected)
    assert {k: metrics["metrics"]["test"][k] for k in expected["test"]} == expected["test"]
    if recipe == "default":
        assert metrics["metrics"]["epoch"] == expected["epoch"] and p_male == expected["p_Male"]
