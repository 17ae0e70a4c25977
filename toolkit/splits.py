"""Train/val/test splits: speaker-disjoint (default) or random (the seed's), both stratified by label."""
from __future__ import annotations

import os
from typing import Callable

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from .errors import ToolkitError
from .fileio import read_json

TEST_FRACTION = 0.20
VAL_FRACTION = 0.08  # of the whole: 72/8/20


def split_random(df: pd.DataFrame, label: str, seed: int) -> dict[str, pd.DataFrame]:
    rest, test = train_test_split(df, test_size=TEST_FRACTION, stratify=df[label], random_state=seed)
    val_of_rest = VAL_FRACTION / (1 - TEST_FRACTION)
    train, val = train_test_split(rest, test_size=val_of_rest, stratify=rest[label], random_state=seed)
    return {"train": train, "val": val, "test": test}


def hold_out_groups(df: pd.DataFrame, label: str, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out about `fraction` of the rows as whole speakers, keeping the label mix (StratifiedGroupKFold fold 0)."""
    n_groups = df["ActorID"].nunique()
    n_splits = min(max(2, round(1 / fraction)), n_groups)
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    # Of the candidate folds pick the one whose size is closest to the target fraction.
    best = min(folds.split(df, df[label], df["ActorID"]), key=lambda f: abs(len(f[1]) / len(df) - fraction))
    return df.iloc[best[0]], df.iloc[best[1]]


def split_by_speaker(df: pd.DataFrame, label: str, seed: int) -> dict[str, pd.DataFrame]:
    if df["ActorID"].nunique() < 3:
        raise ToolkitError(
            f"a speaker-disjoint split needs at least 3 speakers, found {df['ActorID'].nunique()}; "
            "add speakers or use --split random"
        )
    rest, test = hold_out_groups(df, label, TEST_FRACTION, seed)
    train, val = hold_out_groups(rest, label, VAL_FRACTION / (1 - TEST_FRACTION), seed)
    return {"train": train, "val": val, "test": test}


def make_splits(df: pd.DataFrame, label: str, how: str, seed: int, source: str = "") -> dict[str, pd.DataFrame]:
    """{'train','val','test'} frames (row order sorted by file name so CSVs are stable).

    Too little data for the split is a ToolkitError whose message starts with `source` (the CSV the rows came from).
    """
    where = f"{source}: " if source else ""
    try:
        splits = split_by_speaker(df, label, seed) if how == "speaker" else split_random(df, label, seed)
    except ToolkitError as e:
        raise ToolkitError(f"{where}{e}")
    except ValueError as e:  # sklearn: a class with a single clip, or a split that would round to 0 clips
        raise ToolkitError(f"{where}{len(df)} clips are too few for a stratified 72/8/20 split by {label} "
                           f"({str(e).splitlines()[0][:90]}); add clips")
    for name, part in splits.items():
        if part.empty:
            raise ToolkitError(f"{where}the {name} split is empty ({len(df)} clips); add data or use --split random")
    return {k: v.sort_values("Audio_file_name").reset_index(drop=True) for k, v in splits.items()}


def manifest_path(folder: str, category: str) -> str:
    """Where stage 2 writes the split manifest: beside the split CSVs."""
    return os.path.join(folder, f"{category}_split.json")


def split_manifest(splits: dict[str, pd.DataFrame], how: str, seed: int, category: str, features: str,
                   csvs: dict[str, str]) -> dict:
    """What a run card records about the split it trained on, written once by stage 2 (nobody re-derives it)."""
    return {"kind": how, "seed": seed, "fractions": {"train": 1 - VAL_FRACTION - TEST_FRACTION, "val": VAL_FRACTION,
                                                    "test": TEST_FRACTION},
            "category": category, "features": features, "clips": {k: len(v) for k, v in splits.items()},
            "speakers": {k: int(v["ActorID"].nunique()) for k, v in splits.items()},
            "csvs": {k: os.path.basename(p) for k, p in csvs.items()}}


def split_of_run(csvs: dict[str, str], category: str) -> dict:
    """The split a run trains on: stage 2's manifest when the CSVs are the ones it wrote, else what is known."""
    path = manifest_path(os.path.dirname(csvs["train"]), category)
    paths = {k: os.path.abspath(p) for k, p in csvs.items()}
    if os.path.isfile(path):
        try:
            manifest = read_json(path)
        except ValueError:
            manifest = None
        if isinstance(manifest, dict) and manifest.get("csvs") == {k: os.path.basename(p) for k, p in csvs.items()}:
            return {**manifest, "csvs": paths}
    return {"kind": "unknown", "csvs": paths}


def training_sets(csvs: dict[str, str], load: Callable, folds: int, seed: int, category: str) -> tuple:
    """(train, val, test, the run card's split) of a training run: each split from its CSV, or with `folds` all three
    CSVs pooled into `train` (val and test None: cross-validation makes its own). load(csv or CSVs, description)."""
    if folds:
        split = {"kind": "speaker-grouped folds", "folds": folds, "seed": seed,
                 "csvs": {k: os.path.abspath(v) for k, v in csvs.items()}}
        return load(list(csvs.values()), "all splits"), None, None, split
    train, val, test = (load(csvs[s], s) for s in ("train", "val", "test"))
    return train, val, test, split_of_run(csvs, category)
