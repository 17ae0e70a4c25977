"""Reading audio (any format, rate and channel count -> mono float32 at one rate) and the worker pool of the
stages that turn many clips into features. soundfile and soxr are imported lazily: training never needs them.
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from typing import Callable, Iterator

import numpy as np

from .errors import ToolkitError


class ClipError(ToolkitError):
    """One clip cannot be used; long runs report it and carry on."""


MIN_SECONDS = 0.05  # shorter than one STFT hop: nothing to show
PARAMS_FILE = "params.json"  # written by stage 2 beside the feature files: how they were made


def load_audio(path: str, sr: int) -> np.ndarray:
    """Mono float32 at `sr`, whatever the file's rate and channel count."""
    import soundfile as sf

    if not os.path.isfile(path):
        raise ClipError(f"{path}: audio file not found; fix the path in the CSV or re-run data_preprocessing.py")
    if os.path.getsize(path) == 0:
        raise ClipError(f"{path}: empty file (0 bytes); re-copy or delete it")
    try:
        y, file_sr = sf.read(path, dtype="float32", always_2d=True)
        y = y.mean(axis=1)
    except Exception as e:
        if path.lower().endswith(".wav"):
            raise ClipError(f"{path}: not a readable WAV file ({str(e).splitlines()[0][:80]}); re-export or delete it")
        y, file_sr = _load_other_format(path)
    if file_sr != sr:
        import soxr

        y = soxr.resample(y, file_sr, sr).astype(np.float32)
    if len(y) < MIN_SECONDS * sr:
        raise ClipError(f"{path}: too short ({len(y) / sr:.3f} s < {MIN_SECONDS} s); nothing to show, leave it out")
    if not np.isfinite(y).all():
        raise ClipError(f"{path}: contains NaN/inf samples; re-export it")
    if np.max(np.abs(y)) < 1e-6:
        raise ClipError(f"{path}: silent clip (all samples ~0); check the recording")
    return y


def _load_other_format(path: str) -> tuple[np.ndarray, int]:
    """Formats libsndfile cannot read (e.g. m4a) through librosa's audioread fallback."""
    import warnings

    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return librosa.load(path, sr=None, mono=True)
    except Exception as e:
        raise ClipError(f"{path}: not a readable audio file ({type(e).__name__}); convert it to WAV")


def limit_blas_threads(n: int = 1):
    """Cap numpy's BLAS (OpenBLAS) threads at `n`; the returned limiter, used as a context, restores them.

    The mel filterbank matmul is tiny, and OpenBLAS's default of one thread per core makes every process's threads
    fight over the same cores: on 2 busy cores a clip took 7 ms with the default and 2 ms with one thread.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # installed with scikit-learn; without it only speed is lost
        return nullcontext()
    return threadpool_limits(n, user_api="blas")


def _init_worker() -> None:
    limit_blas_threads()
    # A pool worker whose parent was killed (SIGKILL, OOM killer) would otherwise wait for work forever.
    parent = os.getppid()

    def exit_when_orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=exit_when_orphaned, daemon=True).start()


def parallel_map(fn: Callable, jobs: list, workers: int, desc: str, unit: str = "clip") -> Iterator:
    """fn over jobs, results in order, with a progress bar; `workers` > 1 spreads the work over processes."""
    from tqdm import tqdm

    if workers <= 1:  # no pool start-up cost for small jobs (and tests)
        with limit_blas_threads():
            yield from tqdm(map(fn, jobs), total=len(jobs), desc=desc, unit=unit)
        return
    chunk = max(1, min(64, len(jobs) // (workers * 8) or 1))
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        yield from tqdm(pool.map(fn, jobs, chunksize=chunk), total=len(jobs), desc=desc, unit=unit)
