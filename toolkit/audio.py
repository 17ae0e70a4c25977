"""Audio -> log-mel spectrogram -> lossless 8-bit image, the one path used by stage 2 and predict.py.

librosa is imported lazily so that training (which only reads images) runs where librosa is absent.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from .errors import ToolkitError
from .fileio import atomic_path


@dataclass(frozen=True)
class MelParams:
    sr: int = 16000
    n_fft: int = 1536
    hop_length: int = 512
    n_mels: int = 180
    top_db: float = 80.0  # dynamic range kept below the reference, the seed's power_to_db default
    db_ref: str = "max"  # 'max': each clip against its own peak (the seed); 'fixed': against full scale

    def tag(self) -> str:
        """A short folder name that changes whenever a parameter does (so stale images are never reused)."""
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        return f"sr{self.sr}_fft{self.n_fft}_hop{self.hop_length}_mels{self.n_mels}_{digest}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MelParams":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class ClipError(ToolkitError):
    """One clip cannot be used; long runs report it and carry on."""


MIN_SECONDS = 0.05  # shorter than one STFT hop: nothing to show
PARAMS_FILE = "params.json"  # written by stage 2 beside the images: how they were made
FIXED_TOP_DB = 40.0  # with db_ref='fixed': a full-scale sine peaks near +40 dB in one mel band (n_fft 1536)


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


_MEL_BASIS: dict[tuple, np.ndarray] = {}


def log_mel(y: np.ndarray, p: MelParams) -> np.ndarray:
    """(n_mels, frames) dB values in [-top_db, 0]; equals librosa melspectrogram + power_to_db."""
    import librosa

    key = (p.sr, p.n_fft, p.n_mels)
    if key not in _MEL_BASIS:
        _MEL_BASIS[key] = librosa.filters.mel(sr=p.sr, n_fft=p.n_fft, n_mels=p.n_mels)
    power = np.abs(librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length)) ** 2
    mel = _MEL_BASIS[key] @ power
    ref = np.max if p.db_ref == "max" else 1.0
    db = librosa.power_to_db(mel, ref=ref, top_db=None)
    # 'max' puts every clip's peak at 0 dB (loudness is lost); 'fixed' keeps a fixed window, so loudness survives.
    top = 0.0 if p.db_ref == "max" else FIXED_TOP_DB
    return np.clip(db, top - p.top_db, top) - top


def warm_up(p: MelParams) -> None:
    """Pay librosa's first-call cost (~1 s of scipy imports) once, here: worker processes forked afterwards
    inherit it instead of each paying it again (on 2 busy cores that was several seconds per worker)."""
    log_mel(np.ones(p.n_fft, np.float32), p)


def to_image(db: np.ndarray, p: MelParams) -> np.ndarray:
    """dB in [-top_db, 0] -> uint8 image, low frequencies at the bottom as people draw spectrograms."""
    scaled = np.round((db + p.top_db) * (255.0 / p.top_db))
    return np.flipud(scaled).clip(0, 255).astype(np.uint8)


def audio_to_image(path: str, p: MelParams) -> np.ndarray:
    return to_image(log_mel(load_audio(path, p.sr), p), p)


def save_png(image: np.ndarray, path: str) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(image, mode="L").save(tmp, format="PNG")


def read_image(path: str) -> np.ndarray:
    """A spectrogram image as a 2-D uint8 array (colour images from other tools are converted to grey)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except FileNotFoundError:
        raise ClipError(f"{path}: image not found; re-run generate_mel_spectrograms.py")
    except Exception as e:
        raise ClipError(f"{path}: not a readable image ({type(e).__name__}); delete it and re-run stage 2")


def spectrogram_job(args: tuple[str, str, MelParams]) -> tuple[str, str | None]:
    """Worker for stage 2: make one PNG unless it already exists. Returns (png_path, error or None)."""
    audio_path, png_path, p = args
    if os.path.exists(png_path):
        return png_path, None
    try:
        save_png(audio_to_image(audio_path, p), png_path)
        return png_path, None
    except ToolkitError as e:
        return png_path, str(e)
    except Exception as e:  # a failing clip never kills a long run
        return png_path, f"{audio_path}: {type(e).__name__}: {e}"


def image_job(args: tuple[str, MelParams]) -> tuple[np.ndarray | None, str | None]:
    """Worker: one clip's spectrogram image in memory, or (None, message) when the clip cannot be used."""
    audio_path, p = args
    try:
        return audio_to_image(audio_path, p), None
    except ToolkitError as e:
        return None, str(e)
    except Exception as e:  # a failing clip never kills a long run
        return None, f"{audio_path}: {type(e).__name__}: {e}"


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


def audio_images(paths: list[str], p: MelParams, workers: int = 1) -> list[tuple[np.ndarray | None, str | None]]:
    """Spectrogram images of many clips made on the fly (no files written): (image, None) or (None, error) each."""
    warm_up(p)
    return list(parallel_map(image_job, [(path, p) for path in paths], workers, desc="spectrograms"))
