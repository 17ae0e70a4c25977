"""Shared fixtures: one tiny demo corpus per test session, taken through stages 1-2 (and 3) once."""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CREMA_D = ROOT.parent / "shared" / "crema-d"
sys.path.insert(0, str(ROOT))


def _share_the_cores() -> None:
    """Under pytest-xdist (`make test`: -n 2) each worker takes its share of the cores for the networks it trains
    in-process: every worker on PyTorch's default (all cores) oversubscribes them, and OpenMP's waiting threads spin."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import numpy  # noqa: F401  (its BLAS sizes its pool now, before the variable below: see test_performance_paths)
        import torch

        share = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(share)
        # The same share for every stage a test starts as a subprocess (run_script, torchrun, the demo, sweep and
        # README scripts): on PyTorch's default of all cores, a run without --threads next to the other worker spun
        # OpenMP threads on busy cores (the README's eGeMAPS mlp on a loaded machine: 80 s of CPU on 2 threads, 11 s
        # on one).
        os.environ["OMP_NUM_THREADS"] = str(share)


_share_the_cores()

# `make test` hands whole files to 2 workers (--dist loadfile) in collection order (--no-loadscope-reorder: xdist's
# default order, most tests first, put the files of few but long tests last, where one of them kept one worker busy
# while the other had finished). Longest first instead, so the last files to start are short ones. Measured
# (--durations of a whole `make test`, summed per file); a file not listed keeps its place after these.
LONGEST_FIRST = ["test_readme.py", "test_own_data.py", "test_speech_encoders.py", "test_hostile_input.py",
                 "test_ddp.py", "test_interruptions.py", "test_experiments.py", "test_summarize.py",
                 "test_evaluate.py", "test_app.py", "test_shards.py", "test_mel_reference.py",
                 "test_hostile_family5.py", "test_egemaps.py", "test_vector_heads.py", "test_help.py",
                 "test_augmentation.py", "test_split_features.py", "test_autoencoder.py", "test_pipeline.py",
                 "test_hostile_families.py", "test_engine.py", "test_onnx.py", "test_recipe.py",
                 "test_pseudo_labeling.py", "test_scale.py", "test_features.py", "test_model_args.py",
                 "test_precision.py", "test_ltas.py"]


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # (stable: each file's own order is kept)


def run_script(script: str, *args: str, check: bool = True, cwd: Path = ROOT, env: dict | None = None,
               in_process: bool = False) -> subprocess.CompletedProcess:
    """Run a stage script as a user would; returns the finished process (stdout/stderr captured as text).
    in_process: the script's main() through the same run_main wrapper its `__main__` calls, in this process (exit
    status, stdout and stderr as a subprocess would give them, without ~3 s of interpreter start-up and imports);
    for the many quick-failing cases. Tests of signals, start-up and the command line itself use a subprocess."""
    if in_process:
        return run_in_process(script, *args, check=check)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=full_env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_in_process(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    from toolkit.cli import run_main
    from toolkit.errors import ToolkitError

    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    argv = [str(a) for a in args]

    def stage() -> None:
        if threading.current_thread() is threading.main_thread():
            run_main(lambda: module.main(argv))
            return
        try:  # (run_main installs signal handlers, which only the main thread may do)
            module.main(argv)
        except ToolkitError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            stage()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    proc = subprocess.CompletedProcess([sys.executable, str(ROOT / script), *argv], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"{script} {' '.join(argv)} exited {code}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture()
def stages_in_process(monkeypatch):
    """experiments/compare_recipes.py and compare_heads.py run every stage as a subprocess (compare_recipes.run); in
    a test of an experiment each runs in this process instead, one at a time: the same commands, output to the same
    logs, a failing stage stops the experiment the same way, without an interpreter start-up and imports per stage."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import compare_heads
    import compare_recipes

    one_at_a_time = threading.Lock()  # the experiments' threads share this process's stdout and torch settings

    def run(script: str, *args: str, log: str | None = None) -> None:
        print("$", script, *map(str, args), flush=True)
        with one_at_a_time:
            proc = run_in_process(script, *args, check=False)
        if log:
            Path(log).write_text(proc.stdout + proc.stderr)
        if proc.returncode:
            sys.exit(f"error: {script} exited {proc.returncode}" + (f"; see {log}" if log else f": {proc.stderr}"))

    monkeypatch.setattr(compare_recipes, "run", run)
    monkeypatch.setattr(compare_heads, "run", run)
    return compare_recipes


# The session's data and models are made in-process (no interpreter start-up and imports per stage), one worker
# process each (a process pool forked from the test process gains nothing on the cores xdist already shares out).

@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """8 speakers × 12 clips of the synthetic corpus (AudioWAV/ + VideoDemographics.csv)."""
    out = tmp_path_factory.mktemp("corpus")
    run_script("make_demo_data.py", "--out", out, "--actors", "8", "--clips_per_actor", "12", "--seed", "1", "--workers", "1",
               in_process=True)
    return out


@pytest.fixture(scope="session")
def sex_data(tiny_corpus: Path) -> Path:
    """tiny_corpus after stages 1 and 2 for category sex: the folder holding sex_train/val/test.csv."""
    run_script("data_preprocessing.py", "--csv_file", "VideoDemographics.csv", "--csv_path", tiny_corpus,
               "--audio_path", tiny_corpus / "AudioWAV", "--category", "sex", in_process=True)
    run_script("generate_mel_spectrograms.py", "--load_csv_path", tiny_corpus, "--save_spec_path", tiny_corpus,
               "--save_csv_path", tiny_corpus, "--category", "sex", "--workers", "1", in_process=True)
    return tiny_corpus


@pytest.fixture(scope="session")
def trained_cnn3(sex_data: Path, tmp_path_factory) -> Path:
    """A cnn3 sex model trained for 2 epochs on sex_data: the folder holding cnn3_sex.pt and its JSON."""
    models = tmp_path_factory.mktemp("models")
    run_script("train_cnn.py", "--csv_load_path", sex_data, "--category", "sex", "--model", "cnn3", "--epochs", "2",
               "--batch_size", "16", "--model_save_path", models, in_process=True)
    return models


@pytest.fixture(scope="session")
def egemaps_data(sex_data, tmp_path_factory):
    """Stage 2 --features egemaps on the session's corpus (its stage-1 CSV), split CSVs in their own folder."""
    out = tmp_path_factory.mktemp("egemaps")
    run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", out, "--save_csv_path", out,
               "--category", "sex", "--features", "egemaps", "--workers", "1", in_process=True)
    return out


@pytest.fixture(scope="session")
def mlp_model(egemaps_data, tmp_path_factory):
    models = tmp_path_factory.mktemp("mlp")
    run_script("train_cnn.py", "--csv_load_path", egemaps_data, "--category", "sex", "--model", "mlp", "--epochs", "30",
               "--batch_size", "16", "--threads", "1", "--model_save_path", models, in_process=True)
    return models


@pytest.fixture(scope="session")
def one_epoch_run(sex_data, tmp_path_factory) -> Path:
    """A finished 1-epoch cnn3 run (with its _last.pt) to copy and resume from."""
    folder = tmp_path_factory.mktemp("one_epoch")
    run_script("train_cnn.py", "--csv_load_path", sex_data, "--model_save_path", folder, "--batch_size", "32", "--epochs", "1",
               "--threads", "1", in_process=True)
    return folder
