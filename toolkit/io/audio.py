"""Reading audio (any format, rate and channel count -> mono float32 at one rate) and the worker pool of the
stages that turn many clips into features. soundfile and soxr are imported lazily: training never needs them.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from typing import Callable, Iterator

import numpy as np

from toolkit.errors import ToolkitError


class ClipError(ToolkitError):
    """One clip cannot be used; long runs report it and carry on."""


MIN_SECONDS = 0.05  # shorter than one STFT hop: nothing to show
MAX_SECONDS = 3600.0  # longer clips are refused unless asked for: memory stays bounded whatever a file claims
MIN_RATE, MAX_RATE = 4000, 192000  # sample rates of real recordings; a header outside them is broken or hostile
MAX_CHANNELS = 64
BLOCK_FRAMES = 1 << 18  # frames read at a time: 8 MB of 8-channel float32
QUIET_DBFS = -60.0  # a clip that never gets louder than this is near silence (or a stereo downmix that cancelled out)
MAX_PEAK = 100.0  # float samples far beyond full scale (±1) are a broken export, not sound
PARAMS_FILE = "params.json"  # written by stage 2 beside the feature files: how they were made


def load_audio(path: str, sr: int, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Mono float32 at `sr`, whatever the file's rate and channel count.

    What cannot be sound is a ClipError saying so: not a regular file, empty, unreadable, a sample rate outside
    4-192 kHz, longer than `max_seconds` (checked from the header, before anything is read), too short, non-finite
    or far beyond full scale, silent or too quiet.
    """
    import soundfile as sf

    if not os.path.exists(path):
        raise ClipError(f"{path}: audio file not found; check the path (in a CSV: its Audio_file_path column)")
    if not os.path.isfile(path):
        raise ClipError(f"{path}: is {'a folder' if os.path.isdir(path) else 'not a regular file'}, not an audio file; leave it out")
    if os.path.getsize(path) == 0:
        raise ClipError(f"{path}: empty file (0 bytes); re-copy it or leave it out")
    try:
        f = sf.SoundFile(path)
    except Exception as e:
        if path.lower().endswith(".wav"):
            raise ClipError(f"{path}: not a readable WAV file ({_reason(e)}); convert it to a standard WAV or leave it out")
        y, file_sr = _load_other_format(path, max_seconds)  # at most max_seconds of it, read whole
        y, peak = _checked_mono(y[:, None], path)
        if file_sr != sr:
            import soxr

            y = soxr.resample(y, file_sr, sr).astype(np.float32)
    else:
        with f:  # one opening for the header and the samples
            _check_header(path, f.samplerate, f.frames / max(f.samplerate, 1), max_seconds, f.channels)
            y, peak = _read_mono(f, path, sr)
    if peak > MAX_PEAK:
        raise ClipError(f"{path}: samples reach {peak:.3g}, far outside full scale (±1): not sound; re-export it")
    if len(y) < MIN_SECONDS * sr:
        raise ClipError(f"{path}: too short ({len(y) / sr:.3f} s < {MIN_SECONDS} s); nothing to show, leave it out")
    if peak < 1e-6:
        raise ClipError(f"{path}: silent clip (all samples ~0); check the recording")
    if 20 * np.log10(peak) < QUIET_DBFS:
        raise ClipError(f"{path}: too quiet (peak {20 * np.log10(peak):.0f} dBFS, below {QUIET_DBFS:.0f} dBFS: near "
                        f"silence, or stereo channels that cancel out); check the recording")
    return y


def _read_mono(f, path: str, sr: int) -> tuple[np.ndarray, float]:
    """The samples of the open soundfile `f` as mono float32 at `sr` and their peak, read BLOCK_FRAMES at a time, each
    block downmixed and resampled before the next is read: memory is the output and one block, whatever the channel
    count and rate (a 1-hour 8-channel 192 kHz file would be 22 GB as float32). The same numbers as reading it whole:
    soxr's stream resampler gives exactly its one-shot result."""
    rate = f.samplerate
    stream = None
    if rate != sr:
        import soxr

        stream = soxr.ResampleStream(rate, sr, 1, dtype="float32")
    out = np.empty(int(np.ceil(f.frames * sr / rate)) + 64, np.float32)  # soxr's output is round(frames * sr / rate)
    # 16-bit PCM (CREMA-D's, most corpora's) is read as integers and scaled by numpy: libsndfile's numbers (x / 32768,
    # exact), but libsndfile's own conversion took ~125 of the 270 us a 2 s clip's read cost, numpy's takes ~15
    pcm16 = f.subtype == "PCM_16"
    filled, peak = 0, 0.0
    while True:
        block = f.read(BLOCK_FRAMES, dtype="int16" if pcm16 else "float32", always_2d=True)
        if pcm16:
            block = block.astype(np.float32) / 32768
        last = len(block) < BLOCK_FRAMES
        mono, block_peak = _checked_mono(block, path)
        peak = max(peak, block_peak)
        if stream is not None:
            mono = stream.resample_chunk(mono, last=last)
        if filled + len(mono) > len(out):  # a header that under-counts its frames
            out = np.concatenate([out[:filled], np.empty(len(mono) + len(out), np.float32)])
        out[filled : filled + len(mono)] = mono
        filled += len(mono)
        if last:
            return out[:filled], peak


def _checked_mono(block: np.ndarray, path: str) -> tuple[np.ndarray, float]:
    """(frames, channels) float32 -> the mono mean and its peak; NaN/inf samples are a ClipError."""
    # one channel is its own mean (numpy's mean over a width-1 axis costs as much as the clip's dB scale)
    mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
    if not np.isfinite(mono).all():
        raise ClipError(f"{path}: contains NaN/inf samples (not sound); re-export it or leave it out")
    return mono, float(np.max(np.abs(mono))) if len(mono) else 0.0


def _check_header(path: str, rate: float, seconds: float, max_seconds: float, channels: int = 1) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise ClipError(f"{path}: {channels} channels (a broken header?); at most {MAX_CHANNELS} are read: re-export it")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ClipError(f"{path}: sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz (a broken header?); "
                        f"re-export it")
    if seconds > max_seconds:
        raise ClipError(f"{path}: {seconds:.0f} s long, more than --max_seconds {max_seconds:.0f}; cut it into "
                        f"shorter files or raise --max_seconds")


def _reason(e: Exception) -> str:
    from toolkit.fileio import reason_of

    return reason_of(e, 80)


def _load_other_format(path: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """Formats libsndfile cannot read (e.g. m4a) through librosa's audioread fallback, at most max_seconds of it."""
    import warnings

    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, rate = librosa.load(path, sr=None, mono=True, duration=max_seconds + 1)
    except Exception as e:
        raise ClipError(f"{path}: not a readable audio file ({type(e).__name__}); convert it to WAV")
    _check_header(path, rate, len(y) / max(rate, 1), max_seconds)
    return y, rate


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
    if "torch" in sys.modules:  # a worker runs its own clips: one torch thread each, not one per core in every worker
        sys.modules["torch"].set_num_threads(1)
    # A pool worker whose parent was killed (SIGKILL, OOM killer) would otherwise wait for work forever.
    parent = os.getppid()

    def exit_when_orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=exit_when_orphaned, daemon=True).start()


def parallel_map(fn: Callable, jobs: list, workers: int, desc: str, unit: str = "clip", bar: bool = True) -> Iterator:
    """fn over jobs, results in order, with a progress bar (unless `bar` is False); `workers` > 1 spreads the work
    over processes.

    An exception in `fn` (an output that cannot be written) stops the map and cancels the jobs not yet started; a
    worker that dies (killed, out of memory) is a one-line ToolkitError.
    """
    from concurrent.futures.process import BrokenProcessPool

    from tqdm import tqdm

    if workers <= 1:  # no pool start-up cost for small jobs (and tests)
        with limit_blas_threads():
            yield from tqdm(map(fn, jobs), total=len(jobs), desc=desc, unit=unit, disable=not bar)
        return
    chunk = max(1, min(64, len(jobs) // (workers * 8) or 1))
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker)

    def in_order() -> Iterator:
        # at most two windows of results wait for the caller (memory stays bounded when it is the slower side)
        window = max(256, 4 * chunk * workers)
        pending = pool.map(fn, jobs[:window], chunksize=chunk)
        for start in range(window, len(jobs) + window, window):
            following = pool.map(fn, jobs[start : start + window], chunksize=chunk)
            yield from pending
            pending = following

    try:
        yield from tqdm(in_order(), total=len(jobs), desc=desc, unit=unit, disable=not bar)
    except BrokenProcessPool:
        raise ToolkitError(f"{desc}: a worker process died (killed, or out of memory?); re-run to continue where it "
                           f"stopped (finished files are kept), with fewer --workers if memory is short")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def fingerprint(path: str) -> str:
    """A short hash of a file's bytes ('missing' if it is no readable regular file; never opens a FIFO): feature files
    are named with it, so a file made from other audio under the same name is never taken for this clip's."""
    import hashlib

    digest = hashlib.sha1()
    if not os.path.isfile(path):
        return "missing"
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return "missing"
    return digest.hexdigest()[:10]
