"""What every openSMILE feature set shares: audEERING's `opensmile` package (it ships its own binary, works offline)
turns a clip into one vector of functionals of a named set; a set is a subclass naming it (egemaps.py, compare.py).
Stored as one float32 .npy per clip; networks see them standardised with the training split's mean and standard
deviation (kept in the run card).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from toolkit.features.base import FeatureParams, FeatureType
from toolkit.io.audio import ClipError

_SMILE: dict = {}  # one openSMILE extractor per process and feature set (creating one costs ~0.2 s)


@dataclass(frozen=True)
class SmileParams(FeatureParams):
    feature_set: str = ""  # openSMILE's name of the set (opensmile.FeatureSet); its functionals level

    def tag_prefix(self) -> str:
        return f"{self.feature_set.lower()}_sr{self.sr}"


def smile(feature_set: str):
    if feature_set not in _SMILE:
        import opensmile

        _SMILE[feature_set] = opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                                              feature_level=opensmile.FeatureLevel.Functionals)
    return _SMILE[feature_set]


class OpenSmile(FeatureType):
    """A set of openSMILE functionals: subclasses give name, folder and Params (whose default feature_set names it)."""

    def extract(self, audio: np.ndarray) -> np.ndarray:
        params = self.params
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Segment too short, filling with NaN": reported below, per clip
            values = smile(params.feature_set).process_signal(audio, params.sr).to_numpy(np.float32)[0]
        if not np.isfinite(values).all():
            raise ClipError(f"openSMILE gave {int((~np.isfinite(values)).sum())} non-finite {params.feature_set} values "
                            f"(a clip too short or broken for it); leave it out")
        return values

    def warm_up(self) -> None:
        smile(self.params.feature_set)  # made once here, inherited by the forked workers
