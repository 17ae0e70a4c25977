"""Log mel filterbank images as Kaldi makes them (compute-fbank-feats), the front end of most speech recognisers
and speaker/paralinguistic x-vector systems: 25 ms frames every 10 ms (snip_edges), DC removed and pre-emphasised
per frame, a Povey window, a 512-point power spectrum and triangular filters spaced evenly on the HTK mel scale from
20 Hz to Nyquist, without area normalisation. Against the mel images (librosa, 32 ms hops, Slaney filters) the time
resolution is three times finer. Energies are kept in dB against full scale (loudness survives), in a window of top_db
below CEILING_DB, as 8-bit grey levels; everything after extraction (storage, resizing, windows, SpecAugment) is the
time-frequency kind's (timefreq.py). numpy only: no librosa, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.features.base import FeatureParams
from toolkit.features.timefreq import TimeFrequencyImage
from toolkit.io.audio import ClipError
from toolkit.io.melspec import MIN_AUDIBLE, to_image

CEILING_DB = 50.0  # a full-scale tone reaches +18 dB (200 Hz) to +48 dB (7 kHz, pre-emphasised) in its bin


@dataclass(frozen=True)
class FbankParams(FeatureParams):
    frame_ms: float = 25.0  # Kaldi's --frame-length
    shift_ms: float = 10.0  # Kaldi's --frame-shift
    n_mels: int = 80  # Kaldi's --num-mel-bins (the image's height)
    low_freq: float = 20.0  # lowest filter edge, Hz (Kaldi's default)
    preemphasis: float = 0.97
    top_db: float = 80.0  # grey levels span [CEILING_DB - top_db, CEILING_DB] dB against full scale

    @property
    def win_length(self) -> int:
        return round(self.sr * self.frame_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sr * self.shift_ms / 1000)

    @property
    def n_fft(self) -> int:
        return 1 << (self.win_length - 1).bit_length()  # Kaldi rounds the frame up to a power of two

    def tag_prefix(self) -> str:
        return f"sr{self.sr}_win{self.frame_ms:g}ms_shift{self.shift_ms:g}ms_bins{self.n_mels}"

    def check(self, source: str) -> None:
        super().check(source)
        if not (isinstance(self.n_mels, int) and 8 <= self.n_mels <= 512):
            raise ToolkitError(f"{source}: {self.n_mels!r} mel bins: use 8-512 (Kaldi's usual: 80)")
        if not (isinstance(self.frame_ms, (int, float)) and isinstance(self.shift_ms, (int, float))
                and 0 < self.shift_ms <= self.frame_ms <= 200 and self.hop_length >= 1):
            raise ToolkitError(f"{source}: frame {self.frame_ms!r} ms, shift {self.shift_ms!r} ms: need 0 < shift <= "
                               f"frame <= 200 ms (Kaldi's: 25 and 10)")
        if not (isinstance(self.low_freq, (int, float)) and 0 <= self.low_freq < self.sr / 4):
            raise ToolkitError(f"{source}: low frequency {self.low_freq!r} Hz must be in 0-{self.sr / 4:g} Hz")
        if not (isinstance(self.preemphasis, (int, float)) and 0 <= self.preemphasis < 1):
            raise ToolkitError(f"{source}: pre-emphasis {self.preemphasis!r} must be in [0, 1)")
        if not isinstance(self.top_db, (int, float)) or not 10 <= self.top_db <= 200:
            raise ToolkitError(f"{source}: top_db {self.top_db!r} is outside 10-200 dB")
        empty = int((mel_banks(self).sum(axis=1) == 0).sum())
        if empty:
            raise ToolkitError(f"{source}: {empty} of {self.n_mels} mel bins are empty at {self.sr} Hz with "
                               f"{self.frame_ms:g} ms frames; use fewer --num_mel_bins or longer --frame_length")


def mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)


def mel_banks(p: FbankParams) -> np.ndarray:
    """(n_mels, n_fft/2 + 1) triangles, equally spaced and linear in mel (Kaldi's MelBanks), peak 1, no norm."""
    edges = np.linspace(mel(p.low_freq), mel(p.sr / 2), p.n_mels + 2)
    bins = mel(np.arange(p.n_fft // 2 + 1) * p.sr / p.n_fft)[None]
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((bins - left) / (centre - left), (right - bins) / (right - centre)))


def povey_window(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n - 1))) ** 0.85


def log_fbank(audio: np.ndarray, p: FbankParams) -> np.ndarray:
    """(n_mels, frames) filterbank energies in dB against full scale."""
    if len(audio) < p.win_length:
        raise ClipError(f"shorter than one {p.frame_ms:g} ms frame ({len(audio)} samples at {p.sr} Hz); leave it out")
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), p.win_length)[:: p.hop_length]
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = np.concatenate([frames[:, :1] * (1 - p.preemphasis), frames[:, 1:] - p.preemphasis * frames[:, :-1]], 1)
    power = np.abs(np.fft.rfft(frames * povey_window(p.win_length), n=p.n_fft)) ** 2
    return 10 * np.log10(np.maximum(mel_banks(p) @ power.T, 1e-10))


class Fbank(TimeFrequencyImage):
    name = "fbank"
    folder = "fbank"
    Params = FbankParams

    @classmethod
    def add_args(cls, p) -> None:
        from toolkit.config import positive_float, positive_int

        p.add_argument("--num_mel_bins", type=positive_int, default=FbankParams.n_mels, help="mel bins (image height)")
        p.add_argument("--frame_length", type=positive_float, default=FbankParams.frame_ms, help="frame length (ms)")
        p.add_argument("--frame_shift", type=positive_float, default=FbankParams.shift_ms,
                       help="frame shift (ms): one image column")

    @classmethod
    def params_from_args(cls, args) -> FbankParams:
        return FbankParams(sr=args.sr, n_mels=args.num_mel_bins, frame_ms=args.frame_length, shift_ms=args.frame_shift)

    def extract(self, audio: np.ndarray) -> np.ndarray:
        p = self.params
        db = np.clip(log_fbank(audio, p), CEILING_DB - p.top_db, CEILING_DB) - CEILING_DB
        image = to_image(db, p)
        if (image > 0).mean() < MIN_AUDIBLE:  # an all-black image with a real label teaches nothing but noise
            raise ClipError(f"too quiet for the filterbank's dB window ({(image > 0).mean():.1%} of it above the floor); "
                            f"raise the recording's level")
        return image
