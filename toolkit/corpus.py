"""Stage 1: CREMA-D metadata + an audio folder -> one row per clip with its label and audio path."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from .errors import ToolkitError
from .labels import CLASSES, age_bin, check_category

CLIP_NAME = re.compile(r"^(?P<ActorID>\d{4})_(?P<Sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<Level>[A-Z]{2})$")
DEMOGRAPHICS_COLUMNS = ["ActorID", "Age", "Sex", "Race", "Ethnicity"]  # VideoDemographics.csv
SEED_COLUMNS = ["ActorID", "File Name", "sex", "race", "age"]  # the seed's CREMA_no_path.csv (subset used)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".aif", ".opus")


def parse_clip_name(name: str) -> dict | None:
    """'1001_DFA_ANG_XX.wav' -> {'ActorID': 1001, 'Sentence': 'DFA', 'emotion': 'ANG', 'Level': 'XX'}."""
    match = CLIP_NAME.match(Path(name).stem)
    if match is None:
        return None
    row = match.groupdict()
    row["ActorID"] = int(row["ActorID"])
    return row


def clips_from_names(names: list[str], demographics: pd.DataFrame) -> pd.DataFrame:
    """Per-clip rows from clip file names joined with the per-actor demographics."""
    parsed = [dict(parse_clip_name(n), Audio_file_name=n) for n in names if parse_clip_name(n)]
    clips = pd.DataFrame(parsed, columns=["ActorID", "Sentence", "emotion", "Level", "Audio_file_name"])
    actors = demographics.rename(columns={"Sex": "sex", "Race": "race"})
    actors = actors.assign(ActorID=actors["ActorID"].astype(int), age=actors["Age"].astype(int).map(age_bin))
    return clips.merge(actors[["ActorID", "Age", "sex", "race", "Ethnicity", "age"]], on="ActorID", how="inner")


def read_metadata(csv_file: str, audio_path: str) -> pd.DataFrame:
    """Read either VideoDemographics.csv (clips found in `audio_path`) or the seed's CREMA_no_path.csv."""
    try:
        table = pd.read_csv(csv_file)
    except FileNotFoundError:
        raise ToolkitError(f"{csv_file}: file not found; pass --csv_file and --csv_path pointing at it")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ToolkitError(f"{csv_file}: cannot read it as CSV ({str(e).splitlines()[0]})")
    if set(DEMOGRAPHICS_COLUMNS) <= set(table.columns):
        names = sorted(n for n in os.listdir(audio_path) if n.lower().endswith(AUDIO_SUFFIXES))
        return clips_from_names(names, table)
    if set(SEED_COLUMNS) <= set(table.columns):
        names = table["File Name"].astype(str)
        table = table.assign(Audio_file_name=[n if n.lower().endswith(AUDIO_SUFFIXES) else n + ".wav" for n in names])
        return table.rename(columns={"Emotion Level": "Level"})
    raise ToolkitError(
        f"{csv_file}: expected CREMA-D's VideoDemographics.csv columns {DEMOGRAPHICS_COLUMNS} "
        f"or the seed's CREMA_no_path.csv columns {SEED_COLUMNS}; got {list(table.columns)}"
    )


def build_category_table(csv_file: str, audio_path: str, category: str) -> tuple[pd.DataFrame, list[str]]:
    """Rows for one category: label column, Audio_file_name, Audio_file_path, ActorID.

    Returns the table and the names of clips whose audio file is missing (left out).
    Race 'Unknown' rows are dropped (race only); other labels must be in the class list.
    """
    check_category(category)
    if not os.path.isdir(audio_path):
        raise ToolkitError(f"{audio_path}: audio folder not found; pass --audio_path pointing at CREMA-D's AudioWAV/")
    table = read_metadata(csv_file, audio_path)
    if category == "race":
        table = table[table["race"] != "Unknown"]
    outside = ~table[category].astype(str).isin(CLASSES[category])
    if outside.any():  # a typo or another coding in the metadata: silently dropping it would shrink the data
        bad = sorted(set(table.loc[outside, category].astype(str)))
        raise ToolkitError(f"{csv_file}: {int(outside.sum())} row(s) have {category} label(s) {bad[:5]} outside the class "
                           f"list {CLASSES[category]}; fix or delete those rows")
    table = table.assign(Audio_file_path=[os.path.join(audio_path, n) for n in table["Audio_file_name"]])
    exists = table["Audio_file_path"].map(os.path.isfile)
    missing = table.loc[~exists, "Audio_file_name"].tolist()
    table = table[exists].sort_values("Audio_file_name").reset_index(drop=True)
    if table.empty:
        raise ToolkitError(f"{csv_file}: no clip with a '{category}' label has its audio in {audio_path}; check --audio_path")
    extra = [c for c in ("Sentence", "emotion", "Level", "sex", "age", "race") if c in table.columns and c != category]
    return table[[category, "Audio_file_name", "Audio_file_path", "ActorID", *extra]], missing
