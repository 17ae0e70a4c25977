"""Features: what a clip becomes before a network sees it. One module per feature; this registry names them.

A registry entry is a feature class; `get_feature(name)(params)` (or `.from_dict(card params)`) is the feature object.
"""
from __future__ import annotations

import os

import pandas as pd

from toolkit.errors import ToolkitError
from toolkit.features.base import (FeatureParams, FeatureSet, FeatureType, clip_of, feature_file_job, feature_file_name,
                                   features_from_audio, subset)
from toolkit.features.compare import Compare
from toolkit.features.egemaps import Egemaps
from toolkit.features.fbank import Fbank
from toolkit.features.mel import Mel
from toolkit.features.ssl import Ssl
from toolkit.features.waveform import Waveform
from toolkit.fileio import read_json
from toolkit.io.audio import PARAMS_FILE

FEATURES: dict[str, type[FeatureType]] = {  # one line per feature
    "mel": Mel,
    "egemaps": Egemaps,
    "compare": Compare,
    "ssl": Ssl,
    "waveform": Waveform,
    "fbank": Fbank,
}
STORED = [name for name, feature in FEATURES.items() if feature.stored]  # what stage 2 can make (--features)

__all__ = ["FEATURES", "STORED", "FeatureParams", "FeatureSet", "FeatureType", "clip_of", "feature_file_job",
           "feature_file_name", "features_from_audio",
           "get_feature", "feature_of_table", "params_beside", "subset"]


def get_feature(name: str) -> type[FeatureType]:
    if name not in FEATURES:
        raise ToolkitError(f"unknown feature type '{name}': choose one of {', '.join(FEATURES)}")
    return FEATURES[name]


def feature_of_table(table: pd.DataFrame, source: str) -> type[FeatureType]:
    """The feature type a split CSV lists, told by its file column (Image_file_path: mel, egemaps_file_path, ...)."""
    stored = [FEATURES[name] for name in STORED]
    found = [f for f in stored if f.column() in table.columns]
    if not found:
        raise ToolkitError(f"{source}: no feature column ({' or '.join(f.column() for f in stored)}); "
                           f"found {list(table.columns)}; pass a split CSV written by generate_mel_spectrograms.py")
    if len(found) > 1:
        raise ToolkitError(f"{source}: more than one feature column ({', '.join(f.column() for f in found)}); "
                           f"keep the one of the features to train on")
    return found[0]


def params_beside(feature_path: str) -> dict:
    """How a stored feature file was made: the params.json stage 2 writes beside it ({} when there is none)."""
    params = os.path.join(os.path.dirname(feature_path), PARAMS_FILE)
    if not os.path.isfile(params):
        return {}
    return read_json(params, "params.json", "delete it and re-run generate_mel_spectrograms.py")
