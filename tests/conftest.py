"""Shared fixtures: one tiny demo corpus per test session, taken through stages 1-2 (and 3) once."""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CREMA_D = ROOT.parent / "shared" / "crema-d"
sys.path.insert(0, str(ROOT))


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

    module = importlib.import_module(script.removesuffix(".py").replace("/", "."))
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_main(lambda: module.main(argv))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    proc = subprocess.CompletedProcess([sys.executable, str(ROOT / script), *argv], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"{script} {' '.join(argv)} exited {code}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """8 speakers × 12 clips of the synthetic corpus (AudioWAV/ + VideoDemographics.csv)."""
    out = tmp_path_factory.mktemp("corpus")
    run_script("make_demo_data.py", "--out", out, "--actors", "8", "--clips_per_actor", "12", "--seed", "1", "--workers", "2")
    return out


@pytest.fixture(scope="session")
def sex_data(tiny_corpus: Path) -> Path:
    """tiny_corpus after stages 1 and 2 for category sex: the folder holding sex_train/val/test.csv."""
    run_script("data_preprocessing.py", "--csv_file", "VideoDemographics.csv", "--csv_path", tiny_corpus,
               "--audio_path", tiny_corpus / "AudioWAV", "--category", "sex")
    run_script("generate_mel_spectrograms.py", "--load_csv_path", tiny_corpus, "--save_spec_path", tiny_corpus,
               "--save_csv_path", tiny_corpus, "--category", "sex", "--workers", "2")
    return tiny_corpus


@pytest.fixture(scope="session")
def trained_cnn3(sex_data: Path, tmp_path_factory) -> Path:
    """A cnn3 sex model trained for 2 epochs on sex_data: the folder holding cnn3_sex.pt and its JSON."""
    models = tmp_path_factory.mktemp("models")
    run_script("train_cnn.py", "--csv_load_path", sex_data, "--category", "sex", "--model", "cnn3", "--epochs", "2",
               "--batch_size", "16", "--model_save_path", models)
    return models


@pytest.fixture(scope="session")
def egemaps_data(sex_data, tmp_path_factory):
    """Stage 2 --features egemaps on the session's corpus (its stage-1 CSV), split CSVs in their own folder."""
    out = tmp_path_factory.mktemp("egemaps")
    run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", out, "--save_csv_path", out,
               "--category", "sex", "--features", "egemaps", "--workers", "2")
    return out


@pytest.fixture(scope="session")
def mlp_model(egemaps_data, tmp_path_factory):
    models = tmp_path_factory.mktemp("mlp")
    run_script("train_cnn.py", "--csv_load_path", egemaps_data, "--category", "sex", "--model", "mlp", "--epochs", "30",
               "--batch_size", "16", "--threads", "1", "--model_save_path", models)
    return models
