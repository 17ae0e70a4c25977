"""Stage 1: metadata + audio -> one row per clip with its label(s), audio path and speaker.

Any data: a CSV with an audio column, one or more label columns and optionally a speaker column (manifest_rows), or
a folder per class (folder_rows). Every label column becomes a category whose classes come from the data.

CREMA-D: three metadata layouts are read, told apart by their columns and row shape:
- per actor: CREMA-D's VideoDemographics.csv (ActorID, Age, Sex, Race, Ethnicity; one row per actor); the clips are
  the files in the audio folder whose names follow CREMA-D's pattern;
- per clip: the seed's CREMA_no_path.csv (ActorID, File Name, sex, race, age, ...; one row per clip) and the seed's
  Emotions-folder CREMA-D_nopath.csv (ActorID, Age, Sex, Race, File Name, emotion, ...; the age group is derived).
Everything left out is reported (count and examples), never dropped without a word.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from toolkit.errors import ToolkitError
from toolkit.fileio import read_csv, read_json, text_file, without_blanks
from toolkit.io.labels import CATEGORIES, CLASSES, age_bin, check_category, classes_for
from toolkit.schemas import LabelManifest, check

CLIP_NAME = re.compile(r"^(?P<ActorID>\d{4})_(?P<Sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<Level>[A-Z]{2})$")
DEMOGRAPHICS_COLUMNS = ["ActorID", "Age", "Sex", "Race", "Ethnicity"]  # VideoDemographics.csv
FILE_COLUMN = "File Name"  # the per-clip layouts' clip name
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".aif", ".opus")
EXAMPLES = 5  # names shown in a report


def parse_clip_name(name: str) -> dict | None:
    """'1001_DFA_ANG_XX.wav' -> {'ActorID': 1001, 'Sentence': 'DFA', 'emotion': 'ANG', 'Level': 'XX'}."""
    match = CLIP_NAME.match(Path(name).stem)
    if match is None:
        return None
    row = match.groupdict()
    row["ActorID"] = int(row["ActorID"])
    return row


def report(count_of: str, names: list[str], why: str) -> str:
    """'3 clip(s) ... left out: why, e.g. a, b, c' — how stage 1 names what it leaves out."""
    return f"{len(names)} {count_of} left out: {why}, e.g. {', '.join(map(str, names[:EXAMPLES]))}"


MAX_AGE = 130


def whole_numbers(table: pd.DataFrame, column: str, source: str) -> pd.Series:
    """A column of whole numbers (IDs, ages: 0-130 years); text, blanks, fractions and impossible ages are a
    one-line error naming rows."""
    values = pd.to_numeric(table[column], errors="coerce")
    bad = values.isna() | (values != values.round()) | (column == "Age") & ~values.between(0, MAX_AGE)
    if bad.any():
        rows = table.index[bad].tolist()
        raise ToolkitError(f"{source}: column '{column}' needs whole numbers{' of years (0-130)' if column == 'Age' else ''}; row(s) {[r + 2 for r in rows[:EXAMPLES]]} "
                           f"(line numbers) hold {table.loc[bad, column].tolist()[:EXAMPLES]}; fix those rows")
    return values.astype(int)


def one_row_per(table: pd.DataFrame, key: str, source: str, what: str, repeats: bool = True) -> pd.DataFrame:
    """Repeated rows of a key with other values are a one-line error; identical ones are dropped with a warning
    (repeats=True) or are an error too (repeats=False: a second row for an actor doubles all of its clips)."""
    repeated = table[table[key].duplicated(keep=False)]
    if repeated.empty:
        return table
    conflicting = sorted({k for k, rows in repeated.groupby(key) if len(rows.drop_duplicates()) > 1}, key=str)
    if conflicting or not repeats:
        how = "rows that disagree" if conflicting else "more than one row"
        raise ToolkitError(f"{source}: {len(conflicting or repeated[key].unique())} {what}(s) have {how}, e.g. {key} "
                           f"{(conflicting or repeated[key].tolist())[0]}; keep one row per {what}")
    print(f"warning: {source}: {repeated[key].nunique()} {what}(s) are listed more than once with the same values "
          f"(e.g. {repeated[key].iloc[0]}); each is used once")
    return table.drop_duplicates()


def clips_from_names(names: list[str], demographics: pd.DataFrame, source: str = "demographics") -> tuple[pd.DataFrame, list[str]]:
    """Per-clip rows from clip file names joined with per-actor demographics, and the reports of what was left out."""
    parsed = [dict(parse_clip_name(n), Audio_file_name=n) for n in names if parse_clip_name(n)]
    unparsed = [n for n in names if not parse_clip_name(n)]
    clips = pd.DataFrame(parsed, columns=["ActorID", "Sentence", "emotion", "Level", "Audio_file_name"])
    actors = demographics.rename(columns={"Sex": "sex", "Race": "race"})
    actors = actors.assign(ActorID=whole_numbers(actors, "ActorID", source), Age=whole_numbers(actors, "Age", source))
    actors = one_row_per(actors, "ActorID", source, "actor", repeats=False)
    actors = actors.assign(age=actors["Age"].map(age_bin))
    table = clips.merge(actors[["ActorID", "Age", "sex", "race", "Ethnicity", "age"]], on="ActorID", how="left", indicator=True)
    unknown = table.loc[table["_merge"] == "left_only", "Audio_file_name"].tolist()
    reports = []
    if unparsed:
        reports.append(report("file(s) of the audio folder", unparsed, "their names are not CREMA-D clip names "
                              "({ActorID}_{Sentence}_{Emotion}_{Level}, upper case)"))
    if unknown:
        reports.append(report("clip(s)", unknown, f"their actor is not in {os.path.basename(source)}"))
    return table[table["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True), reports


def per_clip_rows(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """The seed's per-clip layouts: columns renamed to stage 1's, the age group derived where the file has none."""
    table = table.rename(columns={"Sex": "sex", "Race": "race", "Emotion Level": "Level"})
    names = table[FILE_COLUMN].astype(str)
    table = table.assign(ActorID=whole_numbers(table, "ActorID", source),
                         Audio_file_name=[n if n.lower().endswith(AUDIO_SUFFIXES) else n + ".wav" for n in names])
    if "age" not in table.columns and "Age" in table.columns:
        table = table.assign(age=whole_numbers(table, "Age", source).map(age_bin))
    if "emotion" not in table.columns:
        table = table.assign(emotion=[(parse_clip_name(n) or {}).get("emotion") for n in table["Audio_file_name"]])
    return one_row_per(table, "Audio_file_name", source, "clip")


def read_table(csv_file: str) -> pd.DataFrame:
    text_file(csv_file, "metadata CSV", "pass --csv_file and --csv_path pointing at it")
    try:
        return pd.read_csv(csv_file)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ToolkitError(f"{csv_file}: cannot read it as CSV ({str(e).splitlines()[0]})")


NOT_AUDIO = "named like audio but not a regular file (a folder, a pipe, a device or a broken link): never opened"


def audio_files(audio_path: str) -> tuple[list[str], list[str]]:
    """The audio files directly in a folder (regular files, hidden ones skipped), sorted, and the report of the
    entries named like audio files that are not regular files (left out unopened: a FIFO would block for ever)."""
    named = sorted(n for n in os.listdir(audio_path) if n.lower().endswith(AUDIO_SUFFIXES) and not n.startswith("."))
    files = [n for n in named if os.path.isfile(os.path.join(audio_path, n))]
    others = sorted(set(named) - set(files))
    return files, [report("entry(ies) of the audio folder", others, NOT_AUDIO)] if others else []


def read_metadata(csv_file: str, audio_path: str) -> tuple[pd.DataFrame, list[str]]:
    """Per-clip rows from any of the three layouts (module docstring), and the reports of what was left out."""
    table = read_table(csv_file)
    columns = set(table.columns)
    if FILE_COLUMN in columns and {"ActorID"} <= columns and ({"sex", "race"} <= columns or {"Sex", "Race"} <= columns):
        return per_clip_rows(table, csv_file), []
    if set(DEMOGRAPHICS_COLUMNS) <= columns and FILE_COLUMN not in columns:
        names, not_files = audio_files(audio_path)
        table, reports = clips_from_names(names, table, csv_file)
        return table, not_files + reports
    raise ToolkitError(
        f"{csv_file}: neither CREMA-D's VideoDemographics.csv (one row per actor: {DEMOGRAPHICS_COLUMNS}) nor a seed "
        f"per-clip CSV (one row per clip: ActorID, '{FILE_COLUMN}', sex/Sex, race/Race); found {list(table.columns)}")


def build_category_table(csv_file: str, audio_path: str, category: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Rows for one category: label column, Audio_file_name, Audio_file_path, ActorID (and the other attributes).

    Returns the table, the names of clips whose audio file is missing (left out), and reports of anything else left
    out. Race 'Unknown' rows are dropped (race only); other labels must be in the class list.
    """
    check_category(category)
    not_cremad = (f"{csv_file}: no '{category}' in CREMA-D's metadata (its categories: {', '.join(CATEGORIES)}); "
                  f"for a label column of your own data pass --label_column {category}")
    if category not in CLASSES:  # before the audio folder: `--category pitch` on one's own CSV is the mistake to name
        raise ToolkitError(not_cremad)
    if not os.path.isdir(audio_path):
        raise ToolkitError(f"{audio_path}: audio folder not found; pass --audio_path pointing at CREMA-D's AudioWAV/")
    table, reports = read_metadata(csv_file, audio_path)
    if category not in table.columns:
        raise ToolkitError(not_cremad)
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
    extra = [c for c in ("Sentence", "emotion", "Level", "sex", "age", "race", "Ethnicity") if c in table.columns and c != category]
    return table[[category, "Audio_file_name", "Audio_file_path", "ActorID", *extra]], missing, reports


# ---------------------------------------------------------------------------------------------- any data

def manifest_rows(csv_file: str, audio_root: str | None, audio_column: str, label_columns: list[str],
                  speaker_column: str | None) -> tuple[pd.DataFrame, list[str]]:
    """One row per clip of a user's CSV: Audio_file_name (its path as listed), Audio_file_path (relative paths
    resolved against `audio_root`, else the CSV's folder), ActorID (the speaker, or the clip itself when there is no
    speaker column), the label columns and the CSV's other columns. Missing audio and blank rows are reported."""
    flags = {audio_column: "--audio_column", **{c: "--label_column" for c in label_columns},
             **({speaker_column: "--speaker_column"} if speaker_column else {})}
    table = read_csv(csv_file, [audio_column, *label_columns, *([speaker_column] if speaker_column else [])], flags)
    if speaker_column:
        check_speaker_ids(table[table[audio_column].notna()], speaker_column, csv_file)
    table = without_blanks(table, [audio_column], csv_file)
    names = table[audio_column].astype(str)
    base = audio_root or os.path.dirname(os.path.abspath(csv_file))
    paths = [n if os.path.isabs(n) else os.path.join(base, n) for n in names]
    speakers = table[speaker_column].astype(str).str.strip() if speaker_column else names
    rows = table.drop(columns=[c for c in ("Audio_file_name", "Audio_file_path", "ActorID") if c in table.columns])
    rows = rows.assign(Audio_file_name=names.values, Audio_file_path=paths, ActorID=speakers.values)
    # One file under two spellings (x.wav, ./x.wav, a/../x.wav, a link to it) is one clip: listed twice it could land
    # in train and test. Rows are compared by the file they name, without the spelling.
    spelling = ["Audio_file_name", audio_column] + ([] if speaker_column else ["ActorID"])  # (the speaker: the name)
    by_file = rows.drop(columns=spelling, errors="ignore").assign(Audio_file_path=[os.path.realpath(p) for p in paths])
    rows = rows.loc[one_row_per(by_file, "Audio_file_path", csv_file, "clip").index]
    return only_existing(rows.reset_index(drop=True), csv_file)


def check_speaker_ids(table: pd.DataFrame, column: str, source: str) -> None:
    """Speaker IDs are names read as text: a blank one, or IDs that mix numbers and text or spell one number two
    ways (1002 and 1002.0, 7 and 007: a spreadsheet's doing), would split one speaker in two (or merge blanks into
    one speaker ''), which a speaker-disjoint split cannot undo: a one-line error naming the lines."""
    flag = f"column '{column}' (--speaker_column)"
    ids = table[column].astype(str).str.strip().where(table[column].notna(), "")
    blank = ids == ""
    if blank.any():
        raise ToolkitError(f"{source}: {int(blank.sum())} row(s) have no speaker in {flag}, line(s) "
                           f"{[i + 2 for i in table.index[blank][:EXAMPLES]]}; fill them in, or leave out --speaker_column "
                           f"to split by clip")
    numbers = pd.to_numeric(ids, errors="coerce")
    numeric = numbers.notna()
    if numeric.any() and not numeric.all():
        raise ToolkitError(f"{source}: {flag} mixes numbers ({', '.join(ids[numeric].unique()[:3])}) and text "
                           f"({', '.join(ids[~numeric].unique()[:3])}) as speaker IDs; write every speaker's ID the same way")
    if numeric.all():
        spellings = ids.groupby(numbers).unique()
        twice = spellings[spellings.map(len) > 1]
        if len(twice):
            raise ToolkitError(f"{source}: {flag} writes one speaker's ID in {len(twice.iloc[0])} ways "
                               f"({', '.join(twice.iloc[0])}); write every speaker's ID the same way")


def folder_rows(root: str, label_column: str) -> tuple[pd.DataFrame, list[str]]:
    """One row per audio file of `root`/<label>/...: the label is the first folder; a folder below it, if any,
    is the speaker (root/<label>/<speaker>/clip.wav), else the clip is its own speaker."""
    if not os.path.isdir(root):
        raise ToolkitError(f"{root}: folder not found; pass --audio_path pointing at a folder with one folder per class")
    rows, not_files = [], []
    for label in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")):
        for folder, dirs, files in os.walk(os.path.join(root, label)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.lower().endswith(AUDIO_SUFFIXES) and not name.startswith("."):
                    relative = os.path.relpath(os.path.join(folder, name), root)
                    if not os.path.isfile(os.path.join(root, relative)):
                        not_files.append(relative)
                        continue
                    parts = relative.split(os.sep)
                    rows.append({label_column: label, "Audio_file_name": relative,
                                 "Audio_file_path": os.path.join(root, relative),
                                 "ActorID": parts[1] if len(parts) > 2 else relative})
    if not rows:
        raise ToolkitError(f"{root}: no audio files in folders below it; put each class's files in a folder named after "
                           f"the class ({root}/<class>/...)")
    return pd.DataFrame(rows), [report("file(s) below the class folders", not_files, NOT_AUDIO)] if not_files else []


def class_folders_above(root: str) -> str | None:
    """The folder above `root` when it looks like the intended one: `root` and at least one sibling each hold only
    folders, which hold audio (parent/<class>/<speaker>/clip.wav with `root` one of the classes): then --audio_path
    was one level too deep and the speaker folders were read as classes."""
    parent = os.path.dirname(os.path.abspath(root))

    def holds_only_folders_of_audio(folder: str) -> bool:
        entries = [e for e in os.scandir(folder) if not e.name.startswith(".")]
        return bool(entries) and all(e.is_dir() and any(f.lower().endswith(AUDIO_SUFFIXES) for f in os.listdir(e.path))
                                     for e in entries)

    siblings = [e.path for e in os.scandir(parent) if e.is_dir() and not e.name.startswith(".")]
    if len(siblings) >= 2 and all(holds_only_folders_of_audio(f) for f in siblings):
        return parent
    return None


def only_existing(table: pd.DataFrame, source: str) -> tuple[pd.DataFrame, list[str]]:
    exists = table["Audio_file_path"].map(os.path.isfile)
    reports = [] if exists.all() else [report("clip(s)", table.loc[~exists, "Audio_file_name"].tolist(),
                                              f"listed in {os.path.basename(source)} but no audio file is there")]
    return table[exists].reset_index(drop=True), reports


def one_category(table: pd.DataFrame, category: str, given: list[str] | None, source: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The rows of one label column as stage 1 writes them, its class list, and reports of the rows left out
    (no label; a label outside --classes)."""
    check_category(category)
    labelled = table[table[category].notna() & (table[category].astype(str).str.strip() != "")]
    reports = [] if len(labelled) == len(table) else [
        report("clip(s)", table.loc[~table.index.isin(labelled.index), "Audio_file_name"].tolist(), f"no '{category}' label")]
    labelled = labelled.assign(**{category: labelled[category].astype(str)})
    found = set(labelled[category])
    if not given and category in CLASSES and not found <= set(CLASSES[category]):
        given = sorted(found)  # a user's own column named like a CREMA-D category, with labels of its own
    classes = classes_for(category, labelled[category], given)
    outside = ~labelled[category].isin(classes)
    if outside.any():
        reports.append(report("clip(s)", labelled.loc[outside, "Audio_file_name"].tolist(),
                              f"their {category} ({sorted(set(labelled.loc[outside, category]))[:EXAMPLES]}) is not in --classes"))
    labelled = labelled[~outside]
    if labelled.empty:
        raise ToolkitError(f"{source}: no clip has a '{category}' label{' in --classes' if given else ''}; check the column")
    if len(classes) < 2:
        raise ToolkitError(f"{source}: '{category}' has only the class {classes}; a classifier needs two or more")
    others = [c for c in labelled.columns if c not in (category, "Audio_file_name", "Audio_file_path", "ActorID")]
    return labelled.sort_values("Audio_file_name")[[category, "Audio_file_name", "Audio_file_path", "ActorID", *others]], classes, reports


def label_manifest_path(category_csv: str) -> str:
    """Stage 1's JSON beside {category}_with_audio_path.csv: the category's classes and where its speakers came from."""
    return os.path.splitext(category_csv)[0] + ".json"


def read_label_manifest(category_csv: str) -> dict:
    """Stage 1's label manifest, checked by its schema ({} for a CSV made by hand or by an earlier version)."""
    path, hint = label_manifest_path(category_csv), "delete it and re-run data_preprocessing.py"
    if not os.path.isfile(path):
        return {}
    return check(LabelManifest, read_json(path, "stage-1 manifest", hint), path, "stage-1 label manifest", hint).model_dump()
