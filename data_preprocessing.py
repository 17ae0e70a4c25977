"""Stage 1: CREMA-D metadata + AudioWAV/ -> {csv_path}/{category}_with_audio_path.csv.

--csv_file may be CREMA-D's own VideoDemographics.csv (clips are found in --audio_path) or one of the seed's per-clip
CSVs (CREMA_no_path.csv, CREMA-D_nopath.csv). Files and clips left out are reported with examples.
"""
from __future__ import annotations

import toolkit  # noqa: F401  (first: a Ctrl-C during the slow imports below then ends in one line)
import os

from toolkit.cli import Parser, run_main
from toolkit.corpus import build_category_table
from toolkit.fileio import output_dir, relative_to_csv, write_csv
from toolkit.labels import CATEGORIES, check_category


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--csv_file", default="VideoDemographics.csv",
                   help="metadata CSV (VideoDemographics.csv or CREMA_no_path.csv), looked up in --csv_path if not a path")
    p.add_argument("--csv_path", default="Data/", help="folder of the metadata CSV; the output CSV is written here")
    p.add_argument("--audio_path", default="Data/AudioWAV/", help="CREMA-D's AudioWAV folder")
    p.add_argument("--category", default="sex", help=f"label to keep: {', '.join(CATEGORIES)}")
    return p


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    check_category(args.category)
    csv_file = args.csv_file if os.path.isfile(args.csv_file) else os.path.join(args.csv_path, args.csv_file)
    table, missing, reports = build_category_table(csv_file, args.audio_path, args.category)
    out = os.path.join(output_dir(args.csv_path, "--csv_path"), f"{args.category}_with_audio_path.csv")
    table["Audio_file_path"] = [relative_to_csv(p, out) for p in table["Audio_file_path"]]
    write_csv(table, out)
    if missing:
        print(f"warning: {len(missing)} clip(s) listed in {csv_file} have no audio file in {args.audio_path} "
              f"and are left out, e.g. {', '.join(missing[:5])}")
    for line in reports:
        print(f"warning: {line}")
    counts = ", ".join(f"{k} {v}" for k, v in table[args.category].value_counts().items())
    print(f"wrote {out}: {len(table)} clips from {table['ActorID'].nunique()} speakers ({counts})")


if __name__ == "__main__":
    run_main(main)
