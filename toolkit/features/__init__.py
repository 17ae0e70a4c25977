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
from toolkit.features.ltas import Ltas
from toolkit.features.mel import Mel
from toolkit.features.ssl import Ssl
from toolkit.features.waveform import Waveform
from toolkit.fileio import read_csv, read_json, require_columns
from toolkit.io.audio import PARAMS_FILE

FEATURES: dict[str, type[FeatureType]] = {  # one line per feature
    "mel": Mel,
    "egemaps": Egemaps,
    "compare": Compare,
    "ssl": Ssl,
    "waveform": Waveform,
    "fbank": Fbank,
    "ltas": Ltas,
}
STORED = [name for name, feature in FEATURES.items() if feature.stored]  # what stage 2 can make (--features)

__all__ = ["CLIP_ID", "FEATURES", "STORED", "FeatureParams", "FeatureSet", "FeatureType", "clip_of", "feature_file_job",
           "feature_file_name", "features_from_audio",
           "get_feature", "feature_of_table", "features_table_path", "split_features", "params_beside", "subset"]
CLIP_ID = "Audio_file_name"  # what a split list and a features table are joined on


def get_feature(name: str) -> type[FeatureType]:
    if name not in FEATURES:
        raise ToolkitError(f"unknown feature type '{name}': choose one of {', '.join(FEATURES)}")
    return FEATURES[name]


def feature_of_table(table: pd.DataFrame, source: str) -> type[FeatureType]:
    """The feature type a split CSV lists, told by its file column (Image_file_path: mel, egemaps_file_path, ...)."""
    stored = [FEATURES[name] for name in STORED]
    found = [f for f in stored if f.column() in table.columns]
    if not found:
        beside = [name for name in STORED if os.path.isfile(features_table_path(source, name))]
        if beside:
            raise ToolkitError(f"{source}: lists no features itself; pass --features {' or '.join(beside)} (the "
                               f"features table{'s' if len(beside) > 1 else ''} beside it)")
        raise ToolkitError(f"{source}: no feature column ({' or '.join(f.column() for f in stored)}); "
                           f"found {list(table.columns)}; pass a split CSV written by generate_mel_spectrograms.py")
    if len(found) > 1:
        raise ToolkitError(f"{source}: more than one feature column ({', '.join(f.column() for f in found)}); "
                           f"keep the one of the features to train on")
    return found[0]


def features_table_path(split_csv: str, feature_name: str) -> str:
    """{category}_{split}.{feature}.csv: one feature type's files for the clips of the split CSV it is beside (stage 2
    writes it when the folder already holds this split made with another feature type)."""
    stem, ext = os.path.splitext(str(split_csv))
    return f"{stem}.{feature_name}{ext}"


def split_features(csv: str, table: pd.DataFrame, wanted: str | None = None) -> tuple[type[FeatureType], pd.DataFrame, str]:
    """(feature type, the split's rows with that type's file column, the CSV its packed store is beside) of split CSV
    `csv` read as `table`: the feature column the CSV holds itself (wanted None or that type: the CSVs of every
    version), else `wanted`'s features table beside it, joined on clip id (a clip without features is left out)."""
    feature = feature_of_table(table, csv) if wanted is None else get_feature(wanted)
    if feature.column() in table.columns:
        return feature, table, csv
    path = features_table_path(csv, feature.name)
    if not os.path.isfile(path):
        listed = [f.name for f in FEATURES.values() if f.stored and f.column() in table.columns]
        raise ToolkitError(f"--features {feature.name}: {csv} lists {' and '.join(listed) or 'no'} features and there is "
                           f"no {os.path.basename(path)} beside it; run generate_mel_spectrograms.py --features "
                           f"{feature.name} with --save_csv_path {os.path.dirname(csv) or '.'}")
    require_columns(table, [CLIP_ID], csv)
    features = read_csv(path, [CLIP_ID, feature.column()])
    joined = table.merge(features[[CLIP_ID, feature.column()]].drop_duplicates(CLIP_ID), on=CLIP_ID, how="inner")
    if len(joined) < len(table):
        print(f"note: {len(table) - len(joined)} clip(s) of {csv} have no {feature.name} features in {path} (stage 2 "
              f"could not make them) and are left out")
    return feature, joined, path


def params_beside(feature_path: str) -> dict:
    """How a stored feature file was made: the params.json stage 2 writes beside it ({} when there is none)."""
    params = os.path.join(os.path.dirname(feature_path), PARAMS_FILE)
    if not os.path.isfile(params):
        return {}
    return read_json(params, "params.json", "delete it and re-run generate_mel_spectrograms.py")
