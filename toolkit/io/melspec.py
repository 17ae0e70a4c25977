"""The log-mel front end in numpy and librosa alone (no torch): the Mel feature type (stage 2, predict.py) and the
ONNX backend (toolkit/serving/onnx_backend.py, which runs where torch is absent) make their images with these same functions.

A clip becomes (n_mels, frames) dB values, scaled to uint8 grey levels with low frequencies at the bottom; a network
input is that image resized to 128 rows and either stretched to 128 columns ('resize') or centred in a window of
`frames` columns ('pad'). `p` is anything with MelParams' attributes (sr, n_fft, hop_length, n_mels, top_db, db_ref,
mel_scale, pad_mode). librosa is imported lazily.
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


def mel_basis(p) -> np.ndarray:
    """librosa's mel filterbank for these parameters (cached: making it costs more than a clip's STFT). Parameters
    without fmin/fmax (the mel images') span 0 Hz to Nyquist, librosa's default; without mel_scale, Slaney's."""
    import warnings

    import librosa

    band = (getattr(p, "fmin", 0.0), getattr(p, "fmax", None))
    key = (p.sr, p.n_fft, p.n_mels, getattr(p, "mel_scale", "slaney"), band)
    if key not in _MEL_BASIS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa's "empty filters" warning: said below in one line instead
            basis = librosa.filters.mel(sr=p.sr, n_fft=p.n_fft, n_mels=p.n_mels, htk=key[3] == "htk", fmin=band[0],
                                        fmax=band[1])
        empty = int((basis.sum(axis=1) == 0).sum())
        if empty:  # such bands are black in every image: garbage a model would happily learn from
            raise ToolkitError(f"{empty} of {p.n_mels} mel bands are empty with n_fft {p.n_fft} at {p.sr} Hz (too few "
                               f"FFT bins between band edges); use fewer --n_mels or a larger --n_fft")
        _MEL_BASIS[key] = basis
    return _MEL_BASIS[key]


def mel_frequencies(p) -> np.ndarray:
    """Centre frequency (Hz) of each mel band of these parameters, lowest first (a plot's axis)."""
    import librosa

    return librosa.mel_frequencies(p.n_mels + 2, fmin=0.0, fmax=p.sr / 2, htk=p.mel_scale == "htk")[1:-1]


def log_mel(y: np.ndarray, p, basis: np.ndarray | None = None, window: str | np.ndarray = "hann") -> np.ndarray:
    """(n_mels, frames) dB values in [-top_db, 0]; equals librosa melspectrogram + power_to_db. `basis` and `window`
    (the filterbank and STFT window, as an export folder stores them) default to librosa's for `p`."""
    import librosa

    power = np.abs(librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length, window=window, pad_mode=p.pad_mode)) ** 2
    mel = (mel_basis(p) if basis is None else basis) @ power
    ref = np.max if p.db_ref == "max" else 1.0
    db = librosa.power_to_db(mel, ref=ref, top_db=None)
    # 'max' puts every clip's peak at 0 dB (loudness is lost); 'fixed' keeps a fixed window, so loudness survives.
    top = 0.0 if p.db_ref == "max" else FIXED_TOP_DB
    return np.clip(db, top - p.top_db, top) - top


def to_image(db: np.ndarray, p) -> np.ndarray:
    """dB in [-top_db, 0] -> uint8 image, low frequencies at the bottom as people draw spectrograms."""
    scaled = np.round((db + p.top_db) * (255.0 / p.top_db))
    return np.flipud(scaled).clip(0, 255).astype(np.uint8)


def mel_image(audio: np.ndarray, p, basis: np.ndarray | None = None, window: str | np.ndarray = "hann") -> np.ndarray:
    """A clip's uint8 spectrogram image (Mel.extract), with `basis` as its filterbank (default: librosa's for `p`)."""
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
