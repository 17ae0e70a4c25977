"""--precision (toolkit/precision.py): float32 on the CPU by default (bit-identical), bf16 autocast when asked where the
CPU has native bf16, silently float32 where it has not; bf16 results equal float32 ones within bf16's tolerance."""
import argparse
import json
from contextlib import nullcontext

import pandas as pd
import pytest
import torch

from conftest import run_script
from toolkit import precision
from toolkit.cli import add_device_flags
from toolkit.errors import ToolkitError
from toolkit.runcard import RunCard, read_card

PROBABILITY_TOLERANCE = 0.02  # bf16 keeps ~3 significant digits; a probability moves by well under 2 points


@pytest.fixture(autouse=True)
def float32_after():
    yield
    precision.use("auto")


def parse(*argv):
    p = argparse.ArgumentParser()
    add_device_flags(p)
    return p.parse_args(list(argv))


def test_default_is_float32_and_every_parse_starts_from_it(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: True)
    assert parse("--precision", "bf16").precision == "bf16"
    assert isinstance(precision.autocast(torch.device("cpu")), torch.autocast)
    assert parse().precision == "auto"  # an in-process run after a bf16 one is float32 again
    assert isinstance(precision.autocast(torch.device("cpu")), nullcontext)
    with pytest.raises(SystemExit):
        parse("--precision", "fp8")


def test_bf16_without_native_support_stays_float32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: False)
    parse("--precision", "bf16")
    assert isinstance(precision.autocast(torch.device("cpu")), nullcontext)


def test_cnn3_bf16_forward_is_within_tolerance():
    from models import build_model

    torch.manual_seed(0)
    model = build_model("cnn3", 2).eval()
    x = torch.rand(16, 3, 128, 128)
    with torch.no_grad():
        full = model(x)
        precision.use("bf16", supported=True)  # emulated where the CPU has no bf16: slower, same numerics
        with precision.autocast(torch.device("cpu")):
            half = model(x)
    assert half.dtype == torch.bfloat16 and not torch.equal(half.float(), full)  # bf16 did run
    assert torch.allclose(half.float().softmax(1), full.softmax(1), atol=PROBABILITY_TOLERANCE)


def test_predict_with_bf16_matches_float32(trained_cnn3, tiny_corpus, tmp_path, monkeypatch):
    audio = sorted((tiny_corpus / "AudioWAV").glob("*.wav"))[:12]
    common = ["--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", *audio, "--device", "cpu", "--threads", "1",
              "--workers", "1"]
    run_script("predict.py", *common, "--out", tmp_path / "fp32.csv", in_process=True)
    run_script("predict.py", *common, "--precision", "auto", "--out", tmp_path / "again.csv", in_process=True)
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "fp32.csv").read_bytes()  # the default: bit-identical
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: True)
    run_script("predict.py", *common, "--precision", "bf16", "--out", tmp_path / "bf16.csv", in_process=True)
    full, half = pd.read_csv(tmp_path / "fp32.csv"), pd.read_csv(tmp_path / "bf16.csv")
    columns = [c for c in full.columns if c.startswith("p_")]
    assert len(full) == 12 and columns
    difference = (full[columns] - half[columns]).abs().to_numpy()
    assert difference.max() <= PROBABILITY_TOLERANCE and difference.max() > 0  # bf16 ran, and stayed close


def train(*argv):
    return run_script("train_cnn.py", "--category", "sex", "--model", "mlp", "--hidden", "16", "--recipe", "default",
                      "--threads", "1", *argv, in_process=True, check=False)


def test_the_card_records_the_precision_and_config_and_resume_reproduce_it(egemaps_data, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: True)  # emulated here where the CPU has none
    first, again = tmp_path / "first", tmp_path / "again"
    assert train("--data_dir", egemaps_data, "--epochs", "1", "--precision", "bf16", "--model_dir", first).returncode == 0
    card = read_card(str(first / "mlp_sex.json"))
    assert card.precision == "bf16" and card.args["precision"] == "bf16"
    precision.use("auto")
    # --config without --precision runs in the card's precision, to the same numbers; --resume continues in it
    assert train("--config", first / "mlp_sex.json", "--model_dir", again).returncode == 0
    rerun = read_card(str(again / "mlp_sex.json"))
    assert rerun.precision == "bf16" and rerun.metrics["val"]["loss"] == pytest.approx(card.metrics["val"]["loss"], abs=1e-6)
    proc = train("--config", first / "mlp_sex.json", "--model_dir", again, "--epochs", "2", "--resume")
    assert proc.returncode == 0 and f"resuming {again / 'mlp_sex_last.pt'} after epoch 1" in proc.stdout
    # resuming it in float32 would mix two precisions in one run: refused, nothing changed
    last = (again / "mlp_sex_last.pt").read_bytes()
    proc = train("--data_dir", egemaps_data, "--epochs", "3", "--precision", "auto", "--model_dir", again, "--resume")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: {again / 'mlp_sex_last.pt'}: --resume would compute in float32, the interrupted run's steps computed in "
        f"bf16; resume with its --precision bf16 on a GPU or a CPU with native bf16, or delete it to start afresh")
    assert (again / "mlp_sex_last.pt").read_bytes() == last
    # on a CPU without native bf16 the re-run asks for bf16, computes (and records) float32
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: False)
    assert train("--config", first / "mlp_sex.json", "--model_dir", tmp_path / "plain").returncode == 0
    plain = read_card(str(tmp_path / "plain" / "mlp_sex.json"))
    assert plain.args["precision"] == "bf16" and plain.precision == "float32"


def test_a_card_without_precision_reads_as_float32_and_a_bad_one_is_refused(mlp_model):
    card = json.loads((mlp_model / "mlp_sex.json").read_text())
    assert card["precision"] == "float32"  # the default: a CPU run in float32
    del card["precision"]
    assert RunCard.from_dict(card, "old.json").precision == "float32"
    with pytest.raises(ToolkitError, match=r"^bad.json: run card: field 'precision'.*restore the file$"):
        RunCard.from_dict({**card, "precision": "fp16"}, "bad.json")
