"""openSMILE eGeMAPS: the extended Geneva Minimalistic Acoustic Parameter Set (Eyben et al. 2016), the field's
standard hand-crafted paralinguistic features: 88 functionals per clip (pitch, jitter, shimmer, loudness, formants,
spectral slope and balance, rates of voiced segments, ...). What openSMILE sets share is in smile.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from toolkit.features.smile import OpenSmile, SmileParams


@dataclass(frozen=True)
class EgemapsParams(SmileParams):
    feature_set: str = "eGeMAPSv02"


class Egemaps(OpenSmile):
    name = "egemaps"
    folder = "egemaps"
    Params = EgemapsParams
