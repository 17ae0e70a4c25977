"""Log-mel spectrogram images: the seed's feature, made exactly as librosa makes it, stored as lossless 8-bit PNGs.

The numbers themselves (STFT, filterbank, dB, grey levels) are made in toolkit/io/melspec.py, which needs no torch. A
clip becomes (n_mels, frames) dB values, scaled to uint8 grey levels with low frequencies at the bottom; what a
time-frequency image shares on its way into a CNN (resizing, padding, windows, SpecAugment) is in timefreq.py.
They need numpy alone (no librosa), so training (which only reads images) runs where librosa is absent.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

import numpy as np

from toolkit.features.base import FeatureParams
from toolkit.features.timefreq import (NORMALIZED_CENTRE, NORMALIZED_SCALE, TimeFrequencyImage,  # noqa: F401 (public here too)
                                       read_image, save_png)
from toolkit.io.melspec import (DB_REFS, FIXED_TOP_DB, IMAGE_SIZE, MEL_SCALES, MIN_AUDIBLE, PAD_MODES,  # noqa: F401
                                check_mel_params, log_mel, mel_basis, mel_frequencies, mel_image, prepare_image, to_image)


# Parameters added after images were first made: at these values they are left out of the folder name's digest, so
# folders made before they existed are still found (and not remade) by a later stage 2 with the same settings.
NEWER_PARAMETERS = {"mel_scale": "slaney", "pad_mode": "constant"}


@dataclass(frozen=True)
class MelParams(FeatureParams):
    n_fft: int = 1536
    hop_length: int = 512
    n_mels: int = 180
    top_db: float = 80.0  # dynamic range kept below the reference, the seed's power_to_db default
    db_ref: str = "max"  # 'max': each clip against its own peak (the seed); 'fixed': against full scale
    mel_scale: str = "slaney"  # librosa's default filterbank; the seed used 'htk'
    pad_mode: str = "constant"  # how the STFT pads the clip's ends (librosa >= 0.10's default); the seed's: 'reflect'

    def tag_prefix(self) -> str:
        return f"sr{self.sr}_fft{self.n_fft}_hop{self.hop_length}_mels{self.n_mels}"

    def digest(self) -> str:
        values = {k: v for k, v in asdict(self).items() if NEWER_PARAMETERS.get(k, object()) != v}
        return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]

    def check(self, source: str) -> None:
        super().check(source)
        check_mel_params(self, source)


def seed_preset(category: str) -> MelParams:
    """The seed project's spectrograms for a category: htk mel, reflect padding, every clip against its own peak;
    age used a longer window and hop (n_fft 2048, hop 1024)."""
    params = MelParams(db_ref="max", mel_scale="htk", pad_mode="reflect")
    return replace(params, n_fft=2048, hop_length=1024) if category == "age" else params


PRESETS = {"default": lambda category: MelParams(db_ref="fixed"), "seed": seed_preset}


class Mel(TimeFrequencyImage):
    name = "mel"
    folder = "mel_spectrograms"
    Params = MelParams

    @classmethod
    def column(cls) -> str:
        return "Image_file_path"  # the seed's name

    @classmethod
    def add_args(cls, p) -> None:
        import argparse

        from toolkit.config import positive_int

        default, seed, seed_age = PRESETS["default"](""), seed_preset(""), seed_preset("age")

        def values(name: str) -> str:
            text = f"default: {getattr(default, name)}; --preset seed: {getattr(seed, name)}"
            return text + (f" ({getattr(seed_age, name)} for age)" if getattr(seed_age, name) != getattr(seed, name) else "")

        p.add_argument("--preset", choices=list(PRESETS), default="default",
                       help="'default': the measured settings; 'seed': the seed project's spectrograms for --category "
                            "(htk mel, reflect padding, each clip against its own peak; for age a 2048 window, hop 1024). "
                            "A flag given on the command line overrides its preset value")
        for name, kwargs, text in (
            ("n_fft", dict(type=positive_int), "STFT window length (samples)"),
            ("hop_length", dict(type=positive_int), "STFT hop (samples)"),
            ("n_mels", dict(type=positive_int), "mel bands (image height)"),
            ("db_ref", dict(choices=DB_REFS), "dB reference: 'fixed' = full scale, window -40..+40 dB, so loudness "
                                              "survives (measured in experiments/RESULTS.md); 'max' = each clip's own peak, "
                                              "as the seed (loudness lost)"),
            ("mel_scale", dict(choices=MEL_SCALES), "mel filterbank: librosa's 'slaney' or the 'htk' formula"),
            ("pad_mode", dict(choices=PAD_MODES), "how the STFT pads the clip's ends: zeros or a mirror image"),
        ):
            p.add_argument(f"--{name}", default=argparse.SUPPRESS, help=f"{text} ({values(name)})", **kwargs)

    @classmethod
    def params_from_args(cls, args) -> MelParams:
        given = {k: getattr(args, k) for k in ("n_fft", "hop_length", "n_mels", "db_ref", "mel_scale", "pad_mode")
                 if hasattr(args, k)}
        return replace(PRESETS[args.preset](args.category), sr=args.sr, **given)

    def extract(self, audio: np.ndarray) -> np.ndarray:
        return mel_image(audio, self.params)

    def warm_up(self) -> None:
        # the filterbank and window are made (and checked) once here, and inherited by the forked workers
        log_mel(np.ones(self.params.n_fft, np.float32), self.params)
