"""Train/val/test splits: speaker-disjoint (default) or random by clip (the seed's), both stratified by label.

A speaker-disjoint split also makes sure, whenever the data allow it, that the validation and the test part each hold
at least one speaker of every class (the best epoch is chosen on the validation part: with one speaker of one class
there, validation F1 flips between 0 and 1 per epoch). What the data cannot give is said in a warning.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable

import pandas as pd

from toolkit.errors import ToolkitError
from toolkit.fileio import read_json
from toolkit.io.labels import CLASSES
from toolkit.schemas import SplitManifest, check

TEST_FRACTION = 0.20
VAL_FRACTION = 0.08  # of the whole: 72/8/20
MIN_SPEAKERS = 3  # a part with fewer speakers gives scores that say more about those speakers than about the model
PARTS = {"train": "training", "val": "validation", "test": "test"}
COPY_COLUMN = "source_clip"  # augmentation.py's copies name their source clip here; original clips leave it blank
COPY_NUMBER_COLUMN = "copy_number"  # which of its source's K copies a copy is (1..K); speaker normalisation groups by it


def is_copy(frame: pd.DataFrame) -> pd.Series:
    """Which rows are augmented copies of another clip (they train beside their source, never validate or test)."""
    if COPY_COLUMN not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame[COPY_COLUMN].notna() & (frame[COPY_COLUMN].astype(str).str.strip() != "")


def normalization_groups(frame: pd.DataFrame, speaker_column: str = "ActorID") -> list[str]:
    """The groups --normalize speaker takes its statistics from: each speaker's original clips, and apart from them
    each speaker's k-th augmented copies (augmentation.py --condition speaker makes those one recording condition, as if
    the speaker had been recorded again elsewhere: normalised on their own, as such a speaker is at test time)."""
    speakers = frame[speaker_column].astype(str)
    if COPY_NUMBER_COLUMN not in frame.columns:
        return speakers.tolist()
    copies = is_copy(frame) & frame[COPY_NUMBER_COLUMN].notna()
    number = frame[COPY_NUMBER_COLUMN].astype(str).str.strip().str.removesuffix(".0")
    return speakers.where(~copies, speakers + " copy " + number).tolist()


def split_random(df: pd.DataFrame, label: str, seed: int, val_fraction: float, test_fraction: float) -> dict[str, pd.DataFrame]:
    from sklearn.model_selection import train_test_split  # (seconds to import: stage 2's --help goes without)

    rest, test = train_test_split(df, test_size=test_fraction, stratify=df[label], random_state=seed)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction), stratify=rest[label], random_state=seed)
    return {"train": train, "val": val, "test": test}


def hold_out_groups(df: pd.DataFrame, label: str, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out about `fraction` of the rows as whole speakers, keeping the label mix; then, where a class has no
    speaker in the held-out part but two or more in the rest, move its smallest speaker over (the rest keeps one)."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = df["ActorID"].nunique()
    n_splits = min(max(2, round(1 / fraction)), n_groups)
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    # Of the candidate folds pick the one whose size is closest to the target fraction.
    with warnings.catch_warnings():  # sklearn's "least populated class" warning: coverage_warnings says it in our words
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        best = min(folds.split(df, df[label], df["ActorID"]), key=lambda f: abs(len(f[1]) / len(df) - fraction))
    rest, held = df.iloc[best[0]], df.iloc[best[1]]
    held, rest = _give_every_class(held, rest, label)  # the part that trains needs each class first
    rest, held = _give_every_class(rest, held, label)
    return rest, held


def _give_every_class(source: pd.DataFrame, target: pd.DataFrame, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Move whole speakers from `source` to `target` for each class `target` lacks and `source` has in two or more
    speakers (so `source` keeps one); the speaker with the fewest clips goes, so the sizes change least."""
    for cls in sorted(set(source[label]) - set(target[label]), key=str):
        speakers = source[source[label] == cls].groupby("ActorID").size().sort_values(kind="stable")
        if len(speakers) < 2:
            continue
        moved = source["ActorID"] == speakers.index[0]
        source, target = source[~moved], pd.concat([target, source[moved]])
    return source, target


def split_by_speaker(df: pd.DataFrame, label: str, seed: int, val_fraction: float, test_fraction: float) -> dict[str, pd.DataFrame]:
    if df["ActorID"].nunique() < 3:
        raise ToolkitError(
            f"a speaker-disjoint split needs at least 3 speakers, found {df['ActorID'].nunique()}; "
            "add speakers or use --split random"
        )
    rest, test = hold_out_groups(df, label, test_fraction, seed)
    train, val = hold_out_groups(rest, label, val_fraction / (1 - test_fraction), seed)
    return {"train": train, "val": val, "test": test}


def coverage_warnings(parts: dict[str, pd.DataFrame], label: str, where: str = "") -> list[str]:
    """What a speaker split lacks: a class with no clip in a part, a part with fewer than MIN_SPEAKERS speakers."""
    classes = sorted(set().union(*(set(p[label]) for p in parts.values())), key=str)
    warnings = []
    for name, part in parts.items():
        missing = [c for c in classes if c not in set(part[label])]
        if missing:
            warnings.append(f"{where}the {PARTS.get(name, name)} part has no clip of class(es) {missing} (too few speakers "
                            f"of them to go round); its scores say nothing about them")
        speakers = part["ActorID"].nunique()
        if speakers < MIN_SPEAKERS:
            warnings.append(f"{where}the {PARTS.get(name, name)} part has {speakers} speaker(s): its scores depend on "
                            f"those voices more than on the model; use more speakers (or --folds)")
    return warnings


def make_splits(df: pd.DataFrame, label: str, how: str, seed: int, source: str = "", val_fraction: float = VAL_FRACTION,
                test_fraction: float = TEST_FRACTION) -> dict[str, pd.DataFrame]:
    """{'train','val','test'} frames (row order sorted by file name so CSVs are stable).

    Too little data for the split is a ToolkitError whose message starts with `source` (the CSV the rows came from).
    """
    where = f"{source}: " if source else ""
    split = split_by_speaker if how == "speaker" else split_random
    try:
        splits = split(df, label, seed, val_fraction, test_fraction)
    except ToolkitError as e:
        raise ToolkitError(f"{where}{e}")
    except ValueError as e:  # sklearn: a class with a single clip, or a split that would round to 0 clips
        shares = "/".join(f"{100 * f:.0f}" for f in (1 - val_fraction - test_fraction, val_fraction, test_fraction))
        raise ToolkitError(f"{where}{len(df)} clips are too few for a stratified {shares} split by {label} "
                           f"({str(e).splitlines()[0][:90]}); add clips")
    for name, part in splits.items():
        if part.empty:
            raise ToolkitError(f"{where}the {name} split is empty ({len(df)} clips); add data or use --split random")
    return {k: v.sort_values("Audio_file_name").reset_index(drop=True) for k, v in splits.items()}


def manifest_path(folder: str, category: str) -> str:
    """Where stage 2 writes the split manifest: beside the split CSVs."""
    return os.path.join(folder, f"{category}_split.json")


def split_manifest(splits: dict[str, pd.DataFrame], kind: str, seed: int, category: str, classes: list[str],
                   features: str, csvs: dict[str, str], fractions: dict[str, float]) -> dict:
    """What a run card records about the split it trained on, written once by stage 2 (nobody re-derives it)."""
    return SplitManifest(kind=kind, seed=seed, fractions=fractions, category=category, classes=classes,
                         features=features, clips={k: len(v) for k, v in splits.items()},
                         speakers={k: int(v["ActorID"].nunique()) for k, v in splits.items()},
                         csvs={k: os.path.basename(p) for k, p in csvs.items()}).model_dump()


def read_split_manifest(path: str, category: str) -> dict:
    """Stage 2's manifest at `path`, checked: its schema, its category, and a CREMA-D category's classes in the order
    the toolkit trains with (another order would put every prediction under a wrong name)."""
    hint = "delete it and re-run generate_mel_spectrograms.py"
    manifest = check(SplitManifest, read_json(path, "split manifest", hint), path, "split manifest", hint).model_dump()
    if manifest["category"] != category:
        raise ToolkitError(f"{path}: split manifest of category {manifest['category']!r}, not {category!r}; {hint}")
    canonical = CLASSES.get(category)
    # a user's own column named like a CREMA-D category has labels of its own (none of CREMA-D's): those are kept
    if canonical and set(manifest["classes"]) & set(canonical) and manifest["classes"] != canonical:
        raise ToolkitError(f"{path}: classes {manifest['classes']} are not CREMA-D's {category} classes {canonical} "
                           f"in their order; {hint}")
    return manifest


def split_of_run(csvs: dict[str, str], category: str) -> dict:
    """The split a run trains on: stage 2's manifest when the CSVs are the ones it wrote, else what is known."""
    path = manifest_path(os.path.dirname(csvs["train"]), category)
    paths = {k: os.path.abspath(p) for k, p in csvs.items()}
    if os.path.isfile(path):
        manifest = read_split_manifest(path, category)
        if manifest["csvs"] == {k: os.path.basename(p) for k, p in csvs.items()}:
            return {**manifest, "csvs": paths, "manifest": os.path.abspath(path)}
    return {"kind": "unknown", "csvs": paths}


def check_classes_trained(split: dict, train) -> None:
    """A class of stage 2's manifest that no training clip has (a hand-edited class list) would be a class the
    network is asked to output but never sees: refused, naming the manifest."""
    if "manifest" not in split or split["category"] in CLASSES:
        return
    counts = train.labels[train.labels >= 0].bincount(minlength=len(train.classes)).tolist()
    unseen = [c for c, n in zip(train.classes, counts) if n == 0]
    if unseen:
        raise ToolkitError(f"{split['manifest']}: class(es) {unseen} of its class list have no clip in the training "
                           f"data; delete it and re-run generate_mel_spectrograms.py")


def training_sets(csvs: dict[str, str], load: Callable, folds: int, seed: int, category: str) -> tuple:
    """(train, val, test, the run card's split) of a training run: each split from its CSV, or with `folds` all three
    CSVs pooled into `train` (val and test None: cross-validation makes its own). load(csv or CSVs, description,
    classes): the classes are stage 2's (its manifest), else the category's, and the same for every split."""
    split = split_of_run(csvs, category)
    if folds:
        train = load(list(csvs.values()), "all splits", split.get("classes"))
        check_classes_trained(split, train)
        return train, None, None, {"kind": "speaker-grouped folds", "folds": folds, "seed": seed, "classes": train.classes,
                                   "csvs": {k: os.path.abspath(v) for k, v in csvs.items()}}
    train = load(csvs["train"], "train", split.get("classes"))
    check_classes_trained(split, train)
    val, test = (load(csvs[s], s, train.classes) for s in ("val", "test"))
    return train, val, test, split
