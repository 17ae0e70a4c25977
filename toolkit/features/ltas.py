"""Long-term average spectrum (LTAS): where a voice puts its energy in frequency, averaged over a clip. Each loud
frame's log-mel spectrum has its own mean level removed, so what is left is the shape of the spectral envelope
(formant region, spectral tilt, the harmonics' spacing at the bottom); the vector is that shape's per-band mean and
standard deviation over the frames (2 x n_mels values).

Why beside eGeMAPS: eGeMAPS reads sex mostly from its F0 and formant *trackers*, which fail on creaky, breathy or
band-limited speech, and a model trained on typical voices then follows pitch alone. The averaged envelope needs no
tracker: a longer vocal tract moves the envelope's formant region (1-3 kHz, above the resolved harmonics) down
whatever the pitch, which is what tells a low-pitched woman from a man (measured in experiments/RESULTS.md,
"Voices never heard, round 3").
LTAS is the phonetician's classic measure of voice and speaker (e.g. Löfqvist 1986; Kitzing 1986).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.features.base import FeatureParams, FeatureType
from toolkit.io.audio import ClipError
from toolkit.io.melspec import mel_basis

MIN_FRAMES = 5  # loud frames a clip needs for an average (50 ms of voice)


@dataclass(frozen=True)
class LtasParams(FeatureParams):
    n_mels: int = 40
    fmin: float = 50.0  # Hz: below the lowest speaking F0
    fmax: float = 8000.0  # Hz, at most half the sample rate
    n_fft: int = 512  # 32 ms at 16 kHz: resolves the formants, smooths over single harmonics above ~300 Hz
    hop_length: int = 160  # 10 ms
    loud_db: float = 30.0  # frames within this of the clip's loudest are averaged (pauses and silence are not)

    def tag_prefix(self) -> str:
        return f"ltas_sr{self.sr}_mels{self.n_mels}"

    def check(self, source: str) -> None:
        super().check(source)
        if not 0 < self.fmin < self.fmax <= self.sr / 2:
            raise ToolkitError(f"{source}: LTAS band {self.fmin}-{self.fmax} Hz must lie within 0-{self.sr / 2:g} Hz "
                               f"(half the sample rate); lower fmax or raise --sr")
        if not (0 < self.n_mels <= 256 and 0 < self.hop_length <= self.n_fft <= 16384 and self.loud_db > 0):
            raise ToolkitError(f"{source}: LTAS settings n_mels={self.n_mels}, n_fft={self.n_fft}, "
                               f"hop_length={self.hop_length}, loud_db={self.loud_db} are out of range; restore them")


def ltas(audio: np.ndarray, params: LtasParams) -> np.ndarray:
    """(2 * n_mels,) float32: per-band mean, then standard deviation, of the level-free log-mel spectrum over the
    clip's loud frames."""
    import librosa

    if len(audio) < params.n_fft:
        raise ClipError(f"shorter than one {params.n_fft}-sample frame; leave it out")
    power = np.abs(librosa.stft(audio.astype(np.float32), n_fft=params.n_fft, hop_length=params.hop_length,
                                center=False)) ** 2
    log_mel = 10 * np.log10(mel_basis(params) @ power + 1e-10)
    level = log_mel.max(axis=0)
    loud = log_mel[:, level > level.max() - params.loud_db]
    if loud.shape[1] < MIN_FRAMES or level.max() <= -90:
        raise ClipError(f"fewer than {MIN_FRAMES} frames with sound in them; leave it out")
    shape = loud - loud.mean(axis=0, keepdims=True)
    return np.concatenate([shape.mean(axis=1), shape.std(axis=1)]).astype(np.float32)


class Ltas(FeatureType):
    name = "ltas"
    folder = "ltas"
    Params = LtasParams

    def extract(self, audio: np.ndarray) -> np.ndarray:
        return ltas(audio, self.params)

    def warm_up(self) -> None:
        ltas(np.random.default_rng(0).standard_normal(self.params.sr).astype(np.float32), self.params)
