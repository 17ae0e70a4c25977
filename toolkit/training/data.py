"""Split CSVs -> one compact in-memory tensor per split (FeatureSet), batched without a DataLoader.

Every clip's feature file is read once; an epoch only indexes the tensor. The feature type (told by the CSV's file
column) decides how the files are stacked and what a batch becomes for the network; this module does the rest:
labels, unreadable files, speaker normalisation, batching, the device.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from toolkit.errors import ToolkitError
from toolkit.features import FeatureSet, FeatureType, features_from_audio, params_beside, split_features, subset
from toolkit.features.store import Store, StoreItems, StoreRows, open_store, store_files
from toolkit.fileio import read_csv, require_columns, resolve_from_csv, without_blanks
from toolkit.io.audio import ClipError
from toolkit.io.labels import classes_for, encode_labels
from toolkit.io.splits import normalization_groups
from toolkit.lazy import torch  # imported when first used: --help needs no torch
from toolkit.training import distributed
from toolkit.training.batch import Batch

SPEAKER_COLUMN = "ActorID"
AUDIO_COLUMN = "Audio_file_path"  # every split CSV lists each clip's audio (relative to the CSV)
NORMALIZE = ("none", "speaker")

__all__ = ["FeatureSet", "subset", "load_split", "batches", "batch_iter", "batches_per_epoch", "move_to_device", "normalize_by_speaker", "SPEAKER_COLUMN"]


def normalize_by_speaker(feature: FeatureType, features: list[np.ndarray], speakers: list) -> list[np.ndarray]:
    """Each speaker's clips normalised with that speaker's own statistics (its input adapter's speaker_normalize)."""
    out = list(features)
    groups: dict = {}
    for i, s in enumerate(speakers):
        groups.setdefault(s, []).append(i)
    for rows in groups.values():
        for i, f in zip(rows, feature.input.speaker_normalize([features[i] for i in rows])):
            out[i] = f
    return out


def load_split(csv_path: str | list[str], category: str | None, config=None, options: dict | None = None,
               normalize: str = "none", desc: str = "", classes: list[str] | None = None,
               from_audio: FeatureType | None = None, features: str | None = None) -> FeatureSet:
    """Load every clip a split CSV lists; a list of CSVs is loaded as one set.

    The feature files are those of the CSV's feature column (stage 2's), or with `features` (a feature type's name)
    those of that type's features table beside the CSV, joined on clip id; with `from_audio` (a feature object with its
    settings, e.g. the waveforms a fine-tuned encoder takes, which stage 2 does not store) each row's Audio_file_path
    is made into that feature instead. The network-input options come from `options` (a run card's) or from `config` (a
    TrainConfig, for a new run). Labels are indices into `classes` (default: labels.classes_for the category and the
    labels found; kept as the set's `classes`). Unreadable files are reported and left out. normalize 'speaker':
    each speaker's clips are normalised with the speaker's own statistics (column ActorID; no labels used).
    """
    csvs = [csv_path] if isinstance(csv_path, (str, os.PathLike)) else list(csv_path)
    csv_path = ", ".join(map(str, csvs))
    tables = [read_csv(c, []) for c in csvs]
    feature, store_csvs = from_audio, csvs
    if from_audio is None:  # the CSV's own feature column, or the `features` table beside it joined on clip id
        joined = [split_features(str(c), t, features) for c, t in zip(csvs, tables)]
        tables, store_csvs = [t for _, t, _ in joined], [s for _, _, s in joined]
        feature = joined[0][0]()  # stored: settings from params.json below
    column, what = (feature.column(), "feature") if from_audio is None else (AUDIO_COLUMN, "audio")
    needed = [column] + ([category] if category else []) + ([SPEAKER_COLUMN] if normalize == "speaker" else [])
    for c, t in zip(csvs, tables):
        require_columns(t, needed, str(c))
    tables = [without_blanks(t, [column], str(c)) for c, t in zip(csvs, tables)]
    if category:
        classes = classes_for(category, pd.concat([t[category] for t in tables]), classes)
    labels = [v for c, t in zip(csvs, tables) for v in (encode_labels(t, category, c, classes) if category else [-1] * len(t))]
    df = pd.concat(tables, ignore_index=True)
    options = options if options is not None else feature.input.input_options(config)
    stores = packed_stores(feature, store_csvs, tables, column) if from_audio is None else None
    if stores:  # how stage 2 made them: the params.json beside its feature files, else the store's copy
        params = params_beside(resolve_from_csv(stores[0].rows[0], csvs[0])) or stores[0].index.get("params") or {}
    if stores and normalize != "speaker":  # stage 2's packed stores, current: mapped, nothing read until a batch is taken
        stacked = feature.input.stack_rows(StoreItems(stores), options)
        folders = [os.path.dirname(os.path.abspath(c)) for c in csvs]  # no file is looked for: 100,000s of rows
        paths = [os.path.join(d, p) for d, rows in zip(folders, (s.rows for s in stores)) for p in rows]
        data = FeatureSet(x=stacked.pop("x"), labels=torch.tensor(labels, dtype=torch.long), paths=paths, frame=df,
                          feature=type(feature).from_dict(params), params=params, options=options, extra=stacked)
        data.classes = classes if category else None
        data.audio = audio_files(csvs, tables)
        return data
    paths = [resolve_from_csv(p, c) for c, t in zip(csvs, tables) for p in t[column].astype(str)]
    if stores:  # speaker normalisation changes every item: all read from the stores (--no_png keeps no clip files)
        items = StoreItems(stores)
        results = [(f, None) for f in items.get(range(len(items)))]
    elif from_audio is None:
        results = [read_feature(feature, path) for path in
                   tqdm(paths, desc=f"loading {desc or os.path.basename(csvs[0])}", unit="clip", leave=False)]
    else:
        results = features_from_audio(feature, paths)
    keep = [i for i, (f, _) in enumerate(results) if f is not None]
    features = [results[i][0] for i in keep]
    failed = [error for _, error in results if error]
    if failed:
        print(f"warning: {len(failed)} {what} file(s) listed in {csv_path} could not be read and are left out, e.g. {failed[0]}")
    if not keep:
        raise ToolkitError(f"{csv_path}: none of its {len(df)} {what} files could be read; "
                           + ("re-run generate_mel_spectrograms.py" if from_audio is None else "fix its Audio_file_path column"))
    data = make_feature_set(feature, features, df.iloc[keep].reset_index(drop=True), options,
                            labels=[labels[i] for i in keep], paths=[paths[i] for i in keep],
                            params=(params if stores else params_beside(paths[keep[0]]) if from_audio is None
                                    else feature.to_dict()),
                            normalize=normalize)
    data.classes = classes if category else None
    audio = audio_files(csvs, tables)
    data.audio = [audio[i] for i in keep] if audio is not None else None
    return data


def audio_files(csvs: list, tables: list[pd.DataFrame]) -> list[str] | None:
    """Each row's audio file as its CSV lists it (a relative path taken from the CSV's folder, no file looked for), or
    None when a CSV has no audio column."""
    if not all(AUDIO_COLUMN in t.columns for t in tables):
        return None
    return [p if os.path.isabs(p) else os.path.join(os.path.dirname(os.path.abspath(str(c))), p)
            for c, t in zip(csvs, tables) for p in t[AUDIO_COLUMN].astype(str)]


def packed_stores(feature: FeatureType, csvs: list, tables: list[pd.DataFrame], column: str) -> list[Store] | None:
    """The packed store (features/store.py) of every CSV, when each has one that matches the CSV as it is now (rows
    in the same order); else None, and the per-clip files are read (a note says so when a store is out of date)."""
    stores = []
    for csv, table in zip(csvs, tables):
        store = open_store(csv, feature.name)
        if store is None or store.rows != table[column].astype(str).tolist():
            if os.path.exists(store_files(csv)[1]):
                print(f"note: {store_files(csv)[1]} does not match {csv} as it is now (edited since stage 2, or another "
                      f"feature type); reading the per-clip files instead (re-run stage 2 to repack)")
            return None
        stores.append(store)
    return stores


def read_feature(feature: FeatureType, path: str) -> tuple[np.ndarray | None, str | None]:
    """A stored feature file, or (None, why it cannot be used)."""
    try:
        return feature.storage.read(path), None
    except ClipError as e:
        return None, str(e)


def make_feature_set(feature: FeatureType, features: list[np.ndarray], frame: pd.DataFrame, options: dict,
                     labels: list[int] | None = None, paths: list[str] | None = None, params: dict | None = None,
                     normalize: str = "none", speakers: list | None = None, stats: dict | None = None) -> FeatureSet:
    """A FeatureSet of per-clip features (rows of `frame`, in order) of `feature` (made with `params` where given: a
    stored split's params.json; else the feature's own settings): speaker-normalised when asked (groups from
    `speakers`, else the frame's speakers and copies: splits.normalization_groups), then stacked as `options` say.
    labels default to -1 (unlabeled)."""
    if params is not None:
        feature = type(feature).from_dict(params)
    if normalize == "speaker":
        speakers = speakers if speakers is not None else normalization_groups(frame, SPEAKER_COLUMN)
        features = normalize_by_speaker(feature, features, speakers)
    stacked = feature.input.stack(features, options)
    return FeatureSet(x=stacked.pop("x"), labels=torch.tensor(labels if labels is not None else [-1] * len(features),
                                                              dtype=torch.long),
                      paths=paths or [], frame=frame, feature=feature, params=params, options=options, stats=stats,
                      extra=stacked)


def batch_iter(data: FeatureSet, batch_size: int, device: torch.device,
               generator: torch.Generator | None = None) -> Iterator[Batch]:
    """Batches of network inputs, labels and item positions; shuffled when a generator is given (training: under
    torchrun this rank's share of the epoch, distributed.shard), in order otherwise."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    if generator is not None:
        order = distributed.shard(order)
    order = order.to(data.x.device)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if generator is not None and data.wave_augment is not None:
            taken = data.wave_augment.take(data, idx, generator)
        else:
            taken = data.feature.input.take(data, idx, generator)
        inputs = {k: v.to(device, non_blocking=True) for k, v in taken.items()} if isinstance(taken, dict) else {"x": taken}
        inputs["x"] = data.to_input(inputs["x"], device)  # a sequence type's take gives {"x", "lengths"}
        yield Batch(inputs, data.labels[idx].to(device, non_blocking=True), idx)


def batches(
    data: FeatureSet, batch_size: int, device: torch.device, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """batch_iter as (inputs, labels) pairs, for code that needs nothing else of a batch."""
    return ((b.x, b.labels) for b in batch_iter(data, batch_size, device, generator))


def batches_per_epoch(data: FeatureSet, batch_size: int) -> int:
    """How many training batches batch_iter makes of `data` in one epoch on this rank."""
    return -(-distributed.share_size(len(data)) // batch_size)


def for_evaluation(data: FeatureSet) -> FeatureSet:
    """`data` as evaluation sees each item: its stored input (no whole clips for random training windows, mel's
    canvas), with each item's length where the type pads (waveforms)."""
    data.extra = {k: v for k, v in data.extra.items() if k == "lengths"}
    return data


def move_to_device(data: FeatureSet, device: torch.device, max_fraction: float = 0.5) -> FeatureSet:
    """On a GPU keep the whole split on the device (uint8 images: 16 KB each) when it fits comfortably."""
    if isinstance(data.x, StoreRows):  # a packed store: batches are made on the host and moved one at a time
        return data
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if data.x.numel() * data.x.element_size() < max_fraction * free:
            data.x = data.x.to(device)
            data.labels = data.labels.to(device)
            extra_bytes = sum(t.numel() * t.element_size() for t in data.extra.values())
            if extra_bytes < max_fraction * free:
                data.extra = {k: v.to(device) for k, v in data.extra.items()}
        else:
            data.x = data.x.pin_memory()
    return data
