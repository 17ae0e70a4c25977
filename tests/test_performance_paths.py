"""The fast paths behave as designed: compact uint8 splits, batch-sized float copies, one BLAS thread per
spectrogram worker, and --compile wired through training. No timings here: benchmarks/ measures speed."""
from __future__ import annotations

import json

import pytest
import torch

from models import build_model
from toolkit.config import RECIPES
from toolkit.features.mel import IMAGE_SIZE
from toolkit.io.audio import parallel_map
from toolkit.training.data import load_split
from toolkit.training.engine import predict_logits, train_one_epoch


def test_split_in_memory_is_uint8_and_one_channel(sex_data):
    data = load_split(str(sex_data / "sex_train.csv"), "sex", RECIPES["seed"])
    n = len(data)
    assert data.x.dtype == torch.uint8
    assert tuple(data.x.shape) == (n, 1, *IMAGE_SIZE)
    # the budget is N×128×128×3 bytes; one stored channel is a third of it
    assert data.x.numel() * data.x.element_size() == n * 128 * 128


def test_float_inputs_are_made_one_batch_at_a_time(sex_data, monkeypatch):
    """Training and evaluation convert to float per batch: never a float32 copy of the whole split."""
    data = load_split(str(sex_data / "sex_train.csv"), "sex", RECIPES["default"])
    seen = []
    real = data.feature.input.to_input

    def spy(x, device, stats):
        seen.append(len(x))
        return real(x, device, stats)

    monkeypatch.setattr(data.feature.input, "to_input", spy)
    model = build_model("cnn3", 2)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    train_one_epoch(model, data, optimizer, 8, torch.device("cpu"), torch.Generator().manual_seed(0))
    predict_logits(model, data, 8, torch.device("cpu"))
    assert len(data) > 8 and sum(seen) == 2 * len(data)
    assert max(seen) == 8


def _blas_threads(_) -> list[int]:
    import numpy  # noqa: F401  (loads the BLAS library whose threads are counted)
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.mark.parametrize("workers", [1, 2])
def test_spectrogram_workers_use_one_blas_thread(workers):
    """Each worker's tiny mel matmul on many BLAS threads made stage 2 3x slower on 2 busy cores."""
    pytest.importorskip("threadpoolctl")
    counts = list(parallel_map(_blas_threads, list(range(4)), workers, desc="test"))
    assert all(counts) and {n for c in counts for n in c} == {1}


def test_compile_flag_trains_and_saves_plain_state_dict(sex_data, tmp_path, monkeypatch):
    """--compile runs the steps through torch.compile, yet the checkpoint keeps the plain parameter names.

    The 'eager' backend keeps the test fast: it exercises the same wrapping without generating C++ kernels.
    """
    import train_cnn

    compiled = []
    real_compile = torch.compile

    def eager_compile(model, **kwargs):
        compiled.append(model)
        return real_compile(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    out = tmp_path / "models"
    train_cnn.main(["--csv_load_path", str(sex_data), "--category", "sex", "--model", "cnn3", "--epochs", "1",
                    "--batch_size", "16", "--recipe", "seed", "--model_save_path", str(out), "--compile",
                    "--device", "cpu", "--threads", "1"])
    assert len(compiled) == 1
    state = torch.load(out / "cnn3_sex.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in state)
    build_model("cnn3", 2).load_state_dict(state)  # strict: every name matches the plain model
    assert json.loads((out / "cnn3_sex.json").read_text())["args"]["compile"] is True
