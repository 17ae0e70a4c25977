"""Augmented copies of training clips on disk (augmentation.py): which clips may be copied, how many copies each gets,
and the worker that writes one copy.

Only training clips are copied: the split is stage 2's (its manifest names the split CSVs), so a copy's speaker is
always a training speaker, and a copy keeps its source's speaker ID so that every later split or fold puts it beside
its source. Each copy's transforms are drawn from a generator seeded by (seed, source clip, copy number), or with
--condition speaker by (seed, speaker, copy number), so that a speaker's k-th copies share one recording condition.
The same seed gives the same copies, and a re-run finds the copies already written (their names hold a hash of what
made them).
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit.augmentation.wave_augment import Step, apply_chain, draw_chain
from toolkit.errors import ToolkitError
from toolkit.fileio import atomic_path, read_csv, read_json, resolve_from_csv
from toolkit.io.audio import MAX_SECONDS, load_audio
from toolkit.io.splits import COPY_COLUMN, COPY_NUMBER_COLUMN, PARTS, is_copy

STAGE1_SUFFIX = "_with_audio_path.csv"  # stage 1's CSV: every clip of the corpus, of whichever split
CLIP_COLUMNS = ("Audio_file_name", "Audio_file_path", "ActorID")


def split_csvs(manifest_file: str) -> tuple[dict, dict[str, str]]:
    """Stage 2's split manifest and the paths of the split CSVs it names (beside it)."""
    if not os.path.isfile(manifest_file):
        raise ToolkitError(f"{manifest_file}: no split manifest; augmentation.py copies training clips only and takes the "
                           f"split from stage 2: run generate_mel_spectrograms.py first (or pass --split_manifest)")
    manifest = read_json(manifest_file, "split manifest", "re-run generate_mel_spectrograms.py")
    names = manifest.get("csvs") if isinstance(manifest, dict) else None
    if not isinstance(names, dict) or set(names) != set(PARTS):
        raise ToolkitError(f"{manifest_file}: not a split manifest of stage 2 (no train/val/test CSVs named); re-run "
                           f"generate_mel_spectrograms.py")
    folder = os.path.dirname(os.path.abspath(manifest_file))
    return manifest, {part: os.path.join(folder, os.path.basename(str(name))) for part, name in names.items()}


def training_clips(csv: str, category: str, manifest_file: str) -> pd.DataFrame:
    """The rows of `csv` to copy: all of them when it lists training clips only; for stage 1's CSV (every clip) those
    of the training split. A validation or test CSV, or any clip of a validation or test speaker (of a validation or
    test clip, for a random split) in another CSV, is a one-line ToolkitError."""
    manifest, parts = split_csvs(manifest_file)
    for part in ("val", "test"):
        if os.path.abspath(csv) == parts[part]:
            raise ToolkitError(f"{csv}: is the {PARTS[part]} split; augmentation.py copies training clips only: pass "
                               f"{os.path.basename(parts['train'])}")
    table = read_csv(csv, [category, *CLIP_COLUMNS])
    held = pd.concat([read_csv(parts[p], list(CLIP_COLUMNS)) for p in ("val", "test")])
    train_names = set(read_csv(parts["train"], ["Audio_file_name"])["Audio_file_name"].astype(str))
    if is_copy(table).any():  # a training CSV that already holds copies: the originals are what is copied
        print(f"{csv}: {int(is_copy(table).sum())} rows are augmented copies themselves; only the originals are copied")
        table = table[~is_copy(table)]
    names = table["Audio_file_name"].astype(str)
    if csv.endswith(STAGE1_SUFFIX):
        chosen = table[names.isin(train_names)]
        print(f"{csv}: the {len(chosen)} of its {len(table)} clips that are in the training split ({parts['train']})")
        return chosen.reset_index(drop=True)
    by_speaker = manifest.get("kind") == "speaker"
    held_out = names.isin(set(held["Audio_file_name"].astype(str)))
    if by_speaker:
        held_out |= table["ActorID"].astype(str).isin(set(held["ActorID"].astype(str)))
    if held_out.any():
        row = table[held_out].iloc[0]
        raise ToolkitError(f"{csv}: {int(held_out.sum())} clip(s) of validation/test speakers (e.g. {row['Audio_file_name']}, "
                           f"speaker {row['ActorID']}); augmentation.py copies training clips only")
    unknown = ~names.isin(train_names)
    if unknown.any():
        raise ToolkitError(f"{csv}: {int(unknown.sum())} clip(s) not in the training split {parts['train']} (e.g. "
                           f"{names[unknown].iloc[0]}); pass that CSV or stage 1's {category}{STAGE1_SUFFIX}")
    return table.reset_index(drop=True)


def copies_per_clip(labels: pd.Series, copies: int, balance: bool, seed: int) -> np.ndarray:
    """How many copies each clip gets: `copies` each; with `balance`, the clips of smaller classes get more, spread
    evenly over a class's clips at random, until every class has as many clips (originals and copies) as the
    largest."""
    counts = np.full(len(labels), copies)
    if not balance:
        return counts
    labels = labels.astype(str).to_numpy()
    sizes = pd.Series(labels).value_counts()
    target = sizes.max() * (1 + copies)
    rng = np.random.default_rng(seed)
    for cls, size in sizes.items():
        rows = np.flatnonzero(labels == cls)
        extra = target - size * (1 + copies)
        order = rng.permutation(rows)
        counts[order] += extra // size
        counts[order[: extra % size]] += 1
    return counts


@dataclass(frozen=True)
class CopyJob:
    source: str  # the source clip's audio file
    out: str  # the copy's WAV
    chain: tuple  # the transforms and their parameters (plan)
    entropy: tuple[int, ...]  # seeds the copy's generators: (seed, hash of the source clip's name, copy number)
    sr: int
    babble: tuple[str, ...]  # audio files of other clips, for babble noise
    max_seconds: float = MAX_SECONDS


def copy_entropy(seed: int, clip: str, number: int) -> tuple[int, ...]:
    return seed, zlib.crc32(clip.encode()), number


def plan(entropy: tuple[int, ...], spec: dict[str, float], sr: int, babble: bool, at_least_one: bool = True) -> list[Step]:
    """A copy's transforms and their parameters (at least one transform unless told otherwise)."""
    return draw_chain(spec, np.random.default_rng(list(entropy)), sr, at_least_one=at_least_one, babble=babble)


def babble_sources(entropy: tuple[int, ...], chain: list[Step], pool: list[str]) -> tuple[str, ...]:
    """The other clips a copy's babble noise is made of (none unless its chain has babble)."""
    voices = next((p.get("voices", 0) for name, p in chain if p.get("kind") == "babble"), 0)
    if not voices:
        return ()
    picks = np.random.default_rng([*entropy, 1]).choice(len(pool), size=min(voices, len(pool)), replace=False)
    return tuple(pool[i] for i in sorted(picks))


def make_copy(source: str, sr: int, chain: list[Step], entropy: tuple[int, ...], babble: tuple[str, ...] = (),
              max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """The source clip's audio put through `chain`; the noise and rooms come from a generator seeded by `entropy`.
    What augmentation.py writes, and what training's --augment makes a feature of."""
    rng = np.random.default_rng([*entropy, 2])
    audio = load_audio(source, sr, max_seconds)
    return apply_chain(audio, sr, chain, rng, lambda count, rng: [load_audio(p, sr) for p in babble])


def copy_name(source_name: str, number: int, source_hash: str, entropy: tuple[int, ...], chain: list[Step], sr: int) -> str:
    """{source stem}_aug{NN}_{hash}.wav: the hash covers the source audio and everything that made the copy, so a copy
    made otherwise (another seed, other transforms, another source recording) never passes for this one."""
    made_of = json.dumps([source_hash, list(entropy), chain, sr], sort_keys=True)
    digest = hashlib.sha1(made_of.encode()).hexdigest()[:8]
    return f"{os.path.splitext(os.path.basename(source_name))[0]}_aug{number:02d}_{digest}.wav"


def write_copy(job: CopyJob) -> tuple[str, str | None]:
    """Worker: make and write one copy unless it exists. Returns (its path, the error or None)."""
    import soundfile as sf

    if os.path.exists(job.out):
        return job.out, None
    try:
        out = make_copy(job.source, job.sr, list(job.chain), job.entropy, job.babble, job.max_seconds)
    except ToolkitError as e:  # a source clip that cannot be read is reported, the run goes on
        return job.out, str(e)
    with atomic_path(job.out) as tmp:
        sf.write(tmp, out, job.sr, format="WAV", subtype="PCM_16")
    return job.out, None


def copy_rows(table: pd.DataFrame, csv: str, feature_columns: list[str]) -> pd.DataFrame:
    """The source rows as the copies' rows start: every column of the source (labels, speaker, ...) but the feature
    files, whose copies stage 2 makes; audio paths absolute (the CSV's own folder is not the copies')."""
    made_here = [COPY_COLUMN, COPY_NUMBER_COLUMN, "transform"]
    rows = table.drop(columns=[c for c in feature_columns if c in table.columns] + made_here, errors="ignore").copy()
    rows["Audio_file_path"] = [os.path.abspath(resolve_from_csv(p, csv)) for p in rows["Audio_file_path"].astype(str)]
    return rows
