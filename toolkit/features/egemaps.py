"""openSMILE eGeMAPS: the extended Geneva Minimalistic Acoustic Parameter Set (Eyben et al. 2016), the field's
standard hand-crafted paralinguistic features: 88 functionals per clip (pitch, jitter, shimmer, loudness, formants,
spectral slope and balance, rates of voiced segments, ...), from audEERING's `opensmile` package (it ships its own
binary, works offline). Stored as one float32 .npy per clip; networks see them standardised with the training
split's mean and standard deviation (kept in the run card).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..audio import ClipError
from .base import FeatureParams, FeatureType

_SMILE: dict = {}  # one openSMILE extractor per process and feature set (creating one costs ~0.2 s)


@dataclass(frozen=True)
class EgemapsParams(FeatureParams):
    feature_set: str = "eGeMAPSv02"  # openSMILE's name of the set; its functionals level

    def tag_prefix(self) -> str:
        return f"{self.feature_set.lower()}_sr{self.sr}"


def smile(feature_set: str):
    if feature_set not in _SMILE:
        import opensmile

        _SMILE[feature_set] = opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                                              feature_level=opensmile.FeatureLevel.Functionals)
    return _SMILE[feature_set]


class Egemaps(FeatureType):
    name = "egemaps"
    kind = "vector"
    folder = "egemaps"
    suffix = ".npy"
    Params = EgemapsParams

    @classmethod
    def extract(cls, audio: np.ndarray, params: EgemapsParams) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Segment too short, filling with NaN": reported below, per clip
            values = smile(params.feature_set).process_signal(audio, params.sr).to_numpy(np.float32)[0]
        if not np.isfinite(values).all():
            raise ClipError(f"openSMILE gave {int((~np.isfinite(values)).sum())} non-finite {params.feature_set} values "
                            f"(a clip too short or broken for it); leave it out")
        return values

    @classmethod
    def warm_up(cls, params: EgemapsParams) -> None:
        smile(params.feature_set)  # made once here, inherited by the forked workers
