"""openSMILE ComParE 2016: the INTERSPEECH Computational Paralinguistics Challenge baseline set (Schuller et al.
2016), 6,373 functionals per clip (statistics of 65 low-level descriptors and their deltas: loudness, MFCC 1-14,
RASTA auditory bands, spectral shape, voicing, jitter, shimmer, HNR, ...): brute force beside eGeMAPS' 88 chosen
measures. Extraction costs about as much CPU as eGeMAPS' (measured: ~26 ms per second of audio on one core), but a
clip's vector is 72 times larger (25 KB). What openSMILE sets share is in smile.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from toolkit.features.smile import OpenSmile, SmileParams


@dataclass(frozen=True)
class CompareParams(SmileParams):
    feature_set: str = "ComParE_2016"


class Compare(OpenSmile):
    name = "compare"
    folder = "compare"
    Params = CompareParams
