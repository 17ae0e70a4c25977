"""Interrupted runs lose nothing: a killed stage 2 re-runs to exactly the expected files, doing only what is
missing; a killed stage 3 resumes (--resume) to the same model and metrics as a run that was never stopped.
The same --seed gives the same split and, on a CPU, the same metrics."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import ROOT, run_script
from toolkit.features.mel import read_image

SPLITS = ("train", "val", "test")


def start(script: str, *args) -> subprocess.Popen:
    """A stage in its own process group (as a shell job is), stdout line by line, progress bars discarded."""
    return subprocess.Popen([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}:\n{proc.stdout.read()}\n{proc.stderr.read()}"
        assert time.time() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.02)


def group_is_gone(pgid: int, timeout: float = 10) -> bool:
    """True once no process of the group is left (pool workers included)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_stage2_killed_midway_reruns_to_exactly_the_expected_files(sex_data, tmp_path, sig):
    spec, out = tmp_path / "spec", tmp_path / "out"
    args = ["--load_csv_path", sex_data, "--save_spec_path", spec, "--save_csv_path", out, "--category", "sex", "--workers", "2"]
    proc = start("generate_mel_spectrograms.py", *args)
    pngs = lambda: list(spec.glob("mel_spectrograms/*/*.png"))  # noqa: E731
    wait_for(lambda: len(pngs()) >= 10, proc, "10 images")
    os.kill(proc.pid, sig)  # the main process only, as the OOM killer or `kill PID` does
    proc.communicate(timeout=60)
    if sig == signal.SIGTERM:  # stopped like Ctrl-C: a one-line message and the conventional status
        assert proc.returncode == 130
    gone = group_is_gone(proc.pid)
    if not gone:
        os.killpg(proc.pid, signal.SIGKILL)  # do not leave them behind when the test fails
    assert gone, "pool workers outlived their killed parent"
    assert not (out / "sex_train.csv").exists()  # it really was stopped midway

    made = pngs()
    assert 10 <= len(made) < 96
    for png in made:  # every image under its real name is complete
        assert read_image(str(png)).shape[0] == 180
    image_dir = made[0].parent
    # what a run killed inside a write leaves behind: a temporary file named after the dead process
    (image_dir / f".1001_DFA_ANG_XX.png.{proc.pid}.abcd1234.tmp.png").write_bytes(b"\x89PNG half")

    rerun = run_script("generate_mel_spectrograms.py", *args, in_process=True)
    assert f"96 clips, {len(made)} mel files already made, {96 - len(made)} to make" in rerun.stdout
    table = pd.read_csv(sex_data / "sex_with_audio_path.csv")
    expected = {Path(n).stem for n in table["Audio_file_name"]} | {"params"}
    assert sorted(p.name.split(".")[0] for p in image_dir.iterdir()) == sorted(expected)  # one file per clip, no leftovers
    assert sorted(p.name for p in out.iterdir()) == sorted(["sex_split.json"] + [f"sex_{s}{suffix}" for s in SPLITS
                                                           for suffix in (".csv", ".store.bin", ".store.json")])
    # same --seed, same split as the fixture's uninterrupted run
    for s in SPLITS:
        ours, theirs = pd.read_csv(out / f"sex_{s}.csv"), pd.read_csv(sex_data / f"sex_{s}.csv")
        assert list(ours["Audio_file_name"]) == list(theirs["Audio_file_name"])


def test_another_seed_gives_another_split(sex_data, tmp_path):
    """The determinism check above can fail: the split really depends on --seed."""
    run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", sex_data,
               "--save_csv_path", tmp_path, "--category", "sex", "--workers", "1", "--seed", "3", in_process=True)
    assert any(set(pd.read_csv(tmp_path / f"sex_{s}.csv")["ActorID"]) != set(pd.read_csv(sex_data / f"sex_{s}.csv")["ActorID"])
               for s in SPLITS)


def comparable(metrics_json: Path) -> dict:
    """A run's metrics without wall-clock times."""
    import json

    results = json.loads(metrics_json.read_text())
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in results["history"]]
    metrics = results["metrics"]
    return {"history": history, "epoch": metrics["epoch"], "val": metrics["val"], "test": metrics["test"]}


def test_stage3_killed_after_an_epoch_resumes_to_the_same_metrics(sex_data, tmp_path):
    epochs = 3
    train_args = ["--csv_load_path", sex_data, "--category", "sex", "--model", "cnn3", "--epochs", epochs,
                  "--batch_size", "16", "--seed", "7", "--threads", "1"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run_script("train_cnn.py", *train_args, "--model_save_path", straight, in_process=True)

    proc = start("train_cnn.py", *train_args, "--model_save_path", stopped)
    for line in proc.stdout:  # the epoch line is printed after that epoch's checkpoint was written
        if line.startswith("epoch   1/"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    last = torch.load(stopped / "cnn3_sex_last.pt", weights_only=True)
    assert 1 <= last["epoch"] < epochs and not (stopped / "cnn3_sex_metrics.json").exists()

    resumed = run_script("train_cnn.py", *train_args, "--model_save_path", stopped, "--resume")
    assert f"resuming {stopped / 'cnn3_sex_last.pt'} after epoch {last['epoch']}" in resumed.stdout
    assert comparable(stopped / "cnn3_sex_metrics.json") == comparable(straight / "cnn3_sex_metrics.json")
    a, b = (torch.load(d / "cnn3_sex.pt", weights_only=True) for d in (straight, stopped))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not [p.name for p in stopped.iterdir() if ".tmp" in p.name]
