"""train_cnn.py under torchrun (toolkit/training/distributed.py): two CPU processes (gloo) train one model data-parallel and
write one set of files, with a run card like a single process's plus world_size."""
import json
import os
import subprocess
import sys

import torch

from conftest import ROOT, run_script
from toolkit.runcard import read_card


def train(sex_data, out, *launcher, extra=()):
    """train_cnn.py 1 epoch under the launcher (torchrun) in a subprocess, or with none in this process."""
    args = ["train_cnn.py", "--csv_load_path", str(sex_data), "--category", "sex", "--model", "cnn3", "--epochs", "1",
            "--batch_size", "16", "--threads", "1", "--device", "cpu", "--model_save_path", str(out), *extra]
    if not launcher:  # the single-process run to compare with (no interpreter start-up and imports)
        return run_script(*args, in_process=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *launcher, *args], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_torchrun_two_processes_train_one_model(sex_data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    train(sex_data, one)
    proc = train(sex_data, two, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone")
    assert sorted(os.listdir(one)) == sorted(os.listdir(two))  # one set of files, nothing per rank, no lock left
    assert proc.stdout.count("best epoch") == 1  # only rank 0 reports
    card, single = read_card(str(two / "cnn3_sex.json")), read_card(str(one / "cnn3_sex.json"))
    assert card.training["world_size"] == 2 and "world_size" not in single.training
    assert card.metrics.keys() == single.metrics.keys() and card.metrics["val"].keys() == single.metrics["val"].keys()
    history = json.loads((two / "cnn3_sex_metrics.json").read_text())["history"]
    assert len(history) == 1 and history[0]["train_loss"] > 0
    # the same data and seed on half the steps per epoch: the result is near the single process's, above chance
    assert card.metrics["val"]["uar"] > 0.5 and abs(card.metrics["val"]["f1"] - single.metrics["val"]["f1"]) < 0.35
    state = torch.load(two / "cnn3_sex_last.pt", weights_only=False)
    assert state["epoch"] == 1 and not any(k.startswith("module.") for k in state["model"])
    # --resume continues from the same _last.pt under torchrun, one more epoch
    resumed = train(sex_data, two, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                    extra=("--resume", "--epochs", "2"))
    assert "resuming" in resumed.stdout
    assert len(json.loads((two / "cnn3_sex_metrics.json").read_text())["history"]) == 2


def test_shard_is_a_deterministic_padded_split(monkeypatch):
    from toolkit.training import distributed

    order = torch.tensor([4, 0, 3, 1, 2])
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda: rank)
        shares.append(distributed.shard(order).tolist())
    assert shares == [[4, 3, 2], [0, 1, 4]]  # padded with the first item: equal shares, every item used
