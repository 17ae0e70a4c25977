"""Stage 1: metadata + audio -> {category}_with_audio_path.csv, one row per clip (label, audio path, speaker).

CREMA-D: --csv_file may be CREMA-D's own VideoDemographics.csv (clips are found in --audio_path) or one of the seed's
per-clip CSVs (CREMA_no_path.csv, CREMA-D_nopath.csv); --category is sex, age, race or emotion.

Your own data: --label_column NAME makes any CSV a manifest: --audio_column names its audio paths (relative ones are
taken from --audio_path, else from the CSV's folder), --speaker_column its speakers (without one the split is by clip:
a speaker may then be in train and test). Each label column becomes a category; its classes are the labels found
(sorted), or --classes a,b,c (that order; other labels are left out). --from_folders reads --audio_path/<class>/...
instead of a CSV (a folder below the class folder, if any, is the speaker). Beside each CSV goes a small JSON with the
category's classes, which the later stages and every model's run card carry.

Files and clips left out are reported with examples.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import os

from toolkit.cli import Parser, run_main
from toolkit.fileio import output_dir, relative_to_csv, write_csv, write_json
from toolkit.io.corpus import build_category_table, class_folders_above, folder_rows, label_manifest_path, manifest_rows, one_category
from toolkit.io.labels import CATEGORIES, CLASSES, check_category
from toolkit.schemas import LabelManifest

CREMA_D_AUDIO = "Data/AudioWAV/"


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--csv_file", "--manifest", default="VideoDemographics.csv",
                   help="metadata CSV (VideoDemographics.csv, CREMA_no_path.csv, or your own with --label_column), looked "
                        "up in --csv_path if not a path")
    p.add_argument("--csv_path", "--data_dir", default="Data/", help="folder of the metadata CSV; the output CSVs are written here")
    p.add_argument("--audio_path", default=None,
                   help=f"CREMA-D's AudioWAV folder (default {CREMA_D_AUDIO}); with --label_column the folder relative audio "
                        f"paths start from (default: the CSV's folder); with --from_folders the folder of class folders")
    p.add_argument("--category", default="sex", help=f"CREMA-D's label to keep: {', '.join(CATEGORIES)}")
    g = p.add_argument_group("your own data")
    g.add_argument("--label_column", action="append", default=None, metavar="NAME",
                   help="a label column of --csv_file; repeat it for several (each becomes a category)")
    g.add_argument("--audio_column", default="file", help="the column holding each clip's audio path")
    g.add_argument("--speaker_column", default=None,
                   help="the column naming each clip's speaker (default: none, and the split is by clip)")
    g.add_argument("--classes", default=None, metavar="A,B,C",
                   help="the classes of the (one) label column, in this order; clips with other labels are left out "
                        "(default: every label found, sorted)")
    g.add_argument("--from_folders", action="store_true",
                   help="no CSV: --audio_path holds one folder per class (the label column is --label_column, default 'label')")
    return p


SPLIT_PARTS = ("train", "validation", "test")


def write_category(table, category: str, classes: list[str], folder: str, source: str, speakers: str | None,
                   speaker_fix: str = "pass --speaker_column") -> None:
    out = os.path.join(folder, f"{category}_with_audio_path.csv")
    table = table.assign(Audio_file_path=[relative_to_csv(p, out) for p in table["Audio_file_path"]])
    write_csv(table, out)
    write_json(LabelManifest(category=category, classes=classes, speaker_column=speakers,
                             source=os.path.abspath(source)).model_dump(), label_manifest_path(out))
    counts = ", ".join(f"{k} {v}" for k, v in table[category].value_counts().items())
    print(f"wrote {out}: {len(table)} clips from {table['ActorID'].nunique()} speakers ({counts})")
    per_class = table.groupby(category)["ActorID"].agg(["nunique", "size"])
    for name, (voices, clips) in per_class[per_class["nunique"] < len(SPLIT_PARTS)].iterrows():
        print(f"warning: {category}: class '{name}' has {clips} clip(s) from {voices} speaker(s); a speaker-disjoint "
              f"split needs {len(SPLIT_PARTS)} speakers to put a class in train, validation and test; add recordings of more "
              f"speakers or leave it out (--classes lists the classes to keep)")
    if speakers is None:
        print(f"note: {category}: no speaker column, so each clip counts as its own speaker and the split will be by "
              f"clip (a speaker may be in train and test); {speaker_fix} for a speaker-independent test")


def main(argv: list[str] | None = None) -> None:
    p = get_args_parser()
    args = p.parse_args(argv)
    given = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    own = bool(args.label_column) or args.from_folders
    if given and (not own or len(args.label_column or ["label"]) != 1):
        p.error("--classes goes with exactly one --label_column (or --from_folders)")
    if given and (len(set(given)) != len(given) or len(given) < 2):
        p.error(f"--classes needs at least 2 distinct classes, got {given}")
    csv_file = args.csv_file if os.path.isfile(args.csv_file) else os.path.join(args.csv_path, args.csv_file)
    if own:
        labels = args.label_column or ["label"]
        for label in labels:
            check_category(label)
        if args.from_folders:
            table, reports = folder_rows(args.audio_path or args.csv_path, labels[0])
            source, speakers = args.audio_path or args.csv_path, "folder" if (table["ActorID"] != table["Audio_file_name"]).any() else None
            above = class_folders_above(source)
            if above:
                reports.append(f"{source}: its {table[labels[0]].nunique()} subfolders were read as classes, but "
                               f"{above} holds it and other folders laid out alike (<class>/<speaker>/clips); if those "
                               f"are the classes, pass --audio_path {above}")
        else:
            table, reports = manifest_rows(csv_file, args.audio_path, args.audio_column, labels, args.speaker_column)
            source, speakers = csv_file, args.speaker_column
        parts = [(label, *one_category(table, label, given, source)) for label in labels]  # all checked before a write
        folder = output_dir(args.csv_path, "--csv_path")
        for label, part, classes, more in parts:
            write_category(part, label, classes, folder, source, speakers,
                           f"put each speaker's clips in a folder below its class folder ({source}/<class>/<speaker>/)"
                           if args.from_folders else "pass --speaker_column")
            reports += more
    else:
        category = check_category(args.category)
        table, missing, reports = build_category_table(csv_file, args.audio_path or CREMA_D_AUDIO, category)
        if missing:
            reports.insert(0, f"{len(missing)} clip(s) listed in {csv_file} have no audio file in "
                              f"{args.audio_path or CREMA_D_AUDIO} and are left out, e.g. {', '.join(missing[:5])}")
        write_category(table, category, CLASSES[category], output_dir(args.csv_path, "--csv_path"), csv_file, "ActorID")
    for line in reports:
        print(f"warning: {line}")


if __name__ == "__main__":
    run_main(main)
