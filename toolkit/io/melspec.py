"""The log-mel front end in numpy alone (no torch, no librosa): the Mel feature type (stage 2, predict.py) and the
ONNX backend (toolkit/serving/onnx_backend.py, which runs where torch is absent) make their images with these same functions.

A clip becomes (n_mels, frames) dB values, scaled to uint8 grey levels with low frequencies at the bottom; a network
input is that image resized to 128 rows and either stretched to 128 columns ('resize') or centred in a window of
`frames` columns ('pad'). `p` is anything with MelParams' attributes (sr, n_fft, hop_length, n_mels, top_db, db_ref,
mel_scale, pad_mode). The STFT, filterbank and dB steps are written here in numpy, each giving exactly the numbers of
librosa 0.11's stft, filters.mel and power_to_db (tests/test_melspec_numpy.py): librosa's first call costs ~1 s of
scipy.signal and numba imports, and its per-call checks about as much as the arithmetic on a short clip.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from toolkit.errors import ToolkitError
from toolkit.io.audio import ClipError
from toolkit.io.windows import window_start

IMAGE_SIZE = (128, 128)  # (height, width) the seed's networks were designed for
FIXED_TOP_DB = 40.0  # with db_ref='fixed': a full-scale sine peaks near +40 dB in one mel band (n_fft 1536)
MIN_AUDIBLE = 0.01  # a spectrogram with less of its area above the dB floor shows nothing
DB_REFS = ("max", "fixed")
MEL_SCALES = ("slaney", "htk")
PAD_MODES = ("constant", "reflect")

_MEL_BASIS: dict[tuple, np.ndarray] = {}
_WINDOWS: dict[int, np.ndarray] = {}
AMIN = 1e-10  # the smallest power the dB scale tells apart (librosa's power_to_db default)


_SLANEY = (200.0 / 3, 1000.0, np.log(6.4) / 27.0)  # Hz per mel below the knee, the knee (Hz), log step above it


def _hz_to_mel(hz: np.ndarray, htk: bool) -> np.ndarray:
    """librosa.hz_to_mel: the HTK formula, or Slaney's (linear below 1 kHz, logarithmic above)."""
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    f_sp, min_log_hz, logstep = _SLANEY
    mels = hz / f_sp
    high = hz >= min_log_hz
    mels[high] = min_log_hz / f_sp + np.log(hz[high] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray, htk: bool) -> np.ndarray:
    """librosa.mel_to_hz, the inverse of _hz_to_mel."""
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp, min_log_hz, logstep = _SLANEY
    hz = f_sp * mels
    high = mels >= min_log_hz / f_sp
    hz[high] = min_log_hz * np.exp(logstep * (mels[high] - min_log_hz / f_sp))
    return hz


def _band_edges(n: int, fmin: float, fmax: float, htk: bool) -> np.ndarray:
    """librosa.mel_frequencies: n frequencies (Hz) evenly spaced on the mel scale from fmin to fmax."""
    ends = _hz_to_mel(np.array([fmin, fmax], dtype=np.float64), htk)
    return _mel_to_hz(np.linspace(ends[0], ends[1], n), htk)


def mel_basis(p) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) float32 mel filterbank for these parameters, librosa.filters.mel's numbers (triangles
    between neighbouring band edges, Slaney area normalisation); cached. Parameters without fmin/fmax (the mel
    images') span 0 Hz to Nyquist, librosa's default; without mel_scale, Slaney's."""
    band = (getattr(p, "fmin", 0.0), getattr(p, "fmax", None))
    key = (p.sr, p.n_fft, p.n_mels, getattr(p, "mel_scale", "slaney"), band)
    if key not in _MEL_BASIS:
        fmax = float(p.sr) / 2 if band[1] is None else band[1]
        edges = _band_edges(p.n_mels + 2, band[0], fmax, key[3] == "htk")
        ramps = np.subtract.outer(edges, np.fft.rfftfreq(n=p.n_fft, d=1.0 / p.sr))
        widths = np.diff(edges)
        basis = np.zeros((p.n_mels, 1 + p.n_fft // 2), dtype=np.float32)
        for i in range(p.n_mels):
            basis[i] = np.maximum(0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
        basis *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
        empty = int((basis.sum(axis=1) == 0).sum())
        if empty:  # such bands are black in every image: garbage a model would happily learn from
            raise ToolkitError(f"{empty} of {p.n_mels} mel bands are empty with n_fft {p.n_fft} at {p.sr} Hz (too few "
                               f"FFT bins between band edges); use fewer --n_mels or a larger --n_fft")
        basis.flags.writeable = False  # shared by every caller
        _MEL_BASIS[key] = basis
    return _MEL_BASIS[key]


def mel_frequencies(p) -> np.ndarray:
    """Centre frequency (Hz) of each mel band of these parameters, lowest first (a plot's axis)."""
    return _band_edges(p.n_mels + 2, 0.0, p.sr / 2, p.mel_scale == "htk")[1:-1]


def hann_window(n_fft: int) -> np.ndarray:
    """The STFT window: scipy.signal.get_window('hann', n_fft, fftbins=True), librosa's, in the same float64 numbers
    (periodic: the last point of an n_fft + 1 symmetric window left off); cached."""
    if n_fft not in _WINDOWS:
        window = 0.5 + 0.5 * np.cos(np.linspace(-np.pi, np.pi, n_fft + 1))[:-1]
        window.flags.writeable = False
        _WINDOWS[n_fft] = window
    return _WINDOWS[n_fft]


def power_spectrogram(y: np.ndarray, p, window: np.ndarray) -> np.ndarray:
    """(1 + n_fft // 2, frames) float32 |STFT|^2 of centred frames: np.abs(librosa.stft(y, ...)) ** 2 exactly (the
    same padding, the windowed frames' float64 FFT rounded to complex64)."""
    half, hop = p.n_fft // 2, p.hop_length
    padded = np.pad(y, half, mode=p.pad_mode)
    first, last = -(-half // hop), (len(y) + half - p.n_fft) // hop + 1  # librosa's start_k and tail_k
    tail = last * hop - half  # where the frames librosa pads on their own begin (when the clip is long enough)
    if p.pad_mode == "reflect" and last > first and tail + p.n_fft <= len(y) + half:
        # librosa mirrors the end of that stretch alone: when it is shorter than the padding (e.g. 2048 samples at
        # n_fft 2048, hop 1024) numpy's mirror folds back once more, which a mirror of the whole clip does not
        padded[-half:] = np.pad(y[tail:], (0, half), mode="reflect")[-half:]
    frames = np.lib.stride_tricks.sliding_window_view(padded, p.n_fft)[::hop]
    # float64 products with the window, their FFT rounded to complex64 for float32 audio: librosa's steps
    spectrum = np.fft.rfft(frames * window, axis=-1).astype(np.result_type(y.dtype, np.complex64))
    return (np.abs(spectrum) ** 2).T


def log_mel(y: np.ndarray, p, basis: np.ndarray | None = None, window: np.ndarray | None = None) -> np.ndarray:
    """(n_mels, frames) dB values in [-top_db, 0]; equals librosa melspectrogram + power_to_db. `basis` and `window`
    (the filterbank and STFT window, as an export folder stores them) default to mel_basis(p) and hann_window."""
    power = power_spectrogram(y, p, hann_window(p.n_fft) if window is None else window)
    mel = (mel_basis(p) if basis is None else basis) @ power
    db = 10.0 * np.log10(np.maximum(AMIN, mel))
    if p.db_ref == "max":  # every clip's peak at 0 dB (loudness is lost); 'fixed' keeps a fixed window, so it survives
        db -= 10.0 * np.log10(np.maximum(AMIN, mel.max()))
    top = 0.0 if p.db_ref == "max" else FIXED_TOP_DB
    return np.clip(db, top - p.top_db, top) - top


def to_image(db: np.ndarray, p) -> np.ndarray:
    """dB in [-top_db, 0] -> uint8 image, low frequencies at the bottom as people draw spectrograms."""
    scaled = np.round((db + p.top_db) * (255.0 / p.top_db))
    return np.flipud(scaled).clip(0, 255).astype(np.uint8)


def mel_image(audio: np.ndarray, p, basis: np.ndarray | None = None, window: np.ndarray | None = None) -> np.ndarray:
    """A clip's uint8 spectrogram image (Mel.extract), with `basis` as its filterbank (default: mel_basis(p))."""
    image = to_image(log_mel(audio, p, basis, window), p)
    audible = float((image > 0).mean())
    if audible < MIN_AUDIBLE:  # an all-black image with a real label teaches nothing but noise
        raise ClipError(f"too quiet for the spectrogram's dB window ({audible:.1%} of it above the floor); raise the "
                        f"recording's level, or use --db_ref max")
    return image


def window_seconds(options: dict, seconds_per_frame: float) -> float:
    """The network's window: `frames` columns ('pad'), or the 128 columns a 'resize' model stretches clips to."""
    return (options.get("frames") or IMAGE_SIZE[1]) * seconds_per_frame


def check_mel_params(p, source: str) -> None:
    """A one-line ToolkitError (naming `source`) when the values cannot make sound spectrograms (the rate aside)."""
    whole = {k: getattr(p, k) for k in ("n_fft", "hop_length", "n_mels")}
    bad = [f"{k} {v!r}" for k, v in whole.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1]
    if bad:
        raise ToolkitError(f"{source}: {', '.join(bad)}: must be whole numbers of at least 1")
    for name, value, allowed in (("db_ref", p.db_ref, DB_REFS), ("mel_scale", p.mel_scale, MEL_SCALES),
                                 ("pad_mode", p.pad_mode, PAD_MODES)):
        if value not in allowed:
            raise ToolkitError(f"{source}: {name} {value!r} is not one of {', '.join(allowed)}")
    if not 64 <= p.n_fft <= 16384:
        raise ToolkitError(f"{source}: n_fft {p.n_fft} gives no usable frequency resolution; use 256-4096 "
                           f"(the seed: 1536)")
    if p.hop_length > p.n_fft:
        raise ToolkitError(f"{source}: hop_length {p.hop_length} is longer than the window (n_fft {p.n_fft}): "
                           f"samples between windows would be skipped; use at most {p.n_fft}")
    if not isinstance(p.top_db, (int, float)) or not 10 <= p.top_db <= 200:
        raise ToolkitError(f"{source}: top_db {p.top_db!r} is outside 10-200 dB")


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def paste_window(out, image, length: int, start: int) -> None:
    """Copy frames [start, start + width of out) of `image` (first `length` columns valid) into `out`.

    Columns outside the clip are left as they are (zero: the dB floor, silence). numpy or torch alike.
    """
    lo, hi = max(start, 0), min(length, start + out.shape[-1])
    if hi > lo:
        out[..., lo - start : hi - start] = image[..., lo:hi]


def prepare_image(image: np.ndarray, size: tuple[int, int] = IMAGE_SIZE, time_axis: str = "resize",
                  frames: int | None = None) -> np.ndarray:
    """2-D uint8 spectrogram -> (1, H, W) uint8 network input, as stage 3 and predict.py see it.

    'resize' stretches the whole clip to `size` (the seed's choice: tempo is lost); 'pad' resizes only the
    frequency axis to size[0] and centres the clip in a window of `frames` columns (padding with silence,
    cropping longer clips), so one frame is always the same 32 ms.
    """
    if time_axis == "resize":
        return resize_image(image, *size)[None]
    image = resize_image(image, size[0], image.shape[1])
    out = np.zeros((1, size[0], frames), np.uint8)
    paste_window(out, image, image.shape[1], window_start(image.shape[1], frames))
    return out
