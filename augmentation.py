"""Augmented copies of the training clips: K new WAVs per clip, each its source with a random chain of waveform
transforms aimed at voice variety (speed, pitch, vocal-tract length, noise, rooms, channels), plus a CSV that stage 2
takes like any other audio list.

Only training clips are copied, never validation or test ones: the split is stage 2's ({category}_split.json beside
the CSV, or --split_manifest). Pass its {category}_train.csv (or stage 1's {category}_with_audio_path.csv: its
training clips are picked); a validation or test CSV, or clips of validation or test speakers, are refused. Every copy
keeps its source's labels and speaker ID and names its source clip (column source_clip) and what was done to it
(column transform, with the parameters), so a speaker and its copies always stay on one side of a split or fold.

The copies then join training through stage 2:
    python augmentation.py --data_dir Data/ --category emotion --copies 2
    python generate_mel_spectrograms.py --load_csv_path Data/ --save_spec_path Data/ --save_csv_path Data/ \\
        --category emotion --augmented_csv Data/emotion_augmented.csv
    python train_cnn.py --data_dir Data/ --category emotion
Stage 2 makes the same split as before and adds the copies to the training CSV only. Each copy's transforms come from
--seed, its source clip and its number: the same flags give the same copies, and a re-run skips those already written.
"""
from __future__ import annotations

import toolkit  # noqa: F401  (first: a Ctrl-C during the slow imports below then ends in one line)
import os

import pandas as pd

from toolkit.augmentation.copies import (CopyJob, babble_sources, copies_per_clip, copy_entropy, copy_name, copy_rows, plan,
                                         training_clips, write_copy)
from toolkit.augmentation.wave_augment import describe, parse_spec, spec_flag, spec_help
from toolkit.cli import Parser, answer_help, in_folder, run_main
from toolkit.config import non_negative, positive_float, positive_int, seed_value
from toolkit.fileio import output_dir, relative_to_csv, write_csv
from toolkit.io.audio import MAX_SECONDS, fingerprint, parallel_map
from toolkit.io.labels import CATEGORIES, check_category
from toolkit.io.splits import COPY_COLUMN, COPY_NUMBER_COLUMN, manifest_path

DEFAULT_TRANSFORMS = "speed,pitch,vtlp,noise,reverb"
CONDITIONS = ("clip", "speaker")  # what one draw of a copy's transforms covers


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--load_csv_path", "--data_dir", default="Data/",
                   help="folder of the CSV to copy and (unless --split_manifest) of stage 2's split manifest")
    p.add_argument("--category", default="sex", help=f"label column: {', '.join(CATEGORIES)}, or yours")
    p.add_argument("--csv", default=None,
                   help="clips to copy: stage 2's {category}_train.csv (default) or stage 1's "
                        "{category}_with_audio_path.csv (its training clips are picked); a bare name is looked up in "
                        "--load_csv_path")
    p.add_argument("--split_manifest", default=None,
                   help="stage 2's {category}_split.json, which names the train/val/test CSVs (default: the one in "
                        "--load_csv_path)")
    p.add_argument("--copies", type=non_negative(int), default=2, help="augmented copies of every training clip (K)")
    p.add_argument("--balance", action="store_true",
                   help="oversample smaller classes: their clips get extra copies until every class has as many clips "
                        "(originals and copies) as the largest")
    p.add_argument("--transforms", type=spec_flag, default=DEFAULT_TRANSFORMS, metavar="NAME[:P],...",
                   help="the transforms a copy may get, each applied with probability P (0.5 when left out; a copy "
                        "whose draws pick none gets one of them at random): " + spec_help())
    p.add_argument("--condition", choices=CONDITIONS, default="clip",
                   help="'clip': every copy its own draw of the transforms; 'speaker': a speaker's k-th copies are one "
                        "recording condition (the same transforms and parameters for all the speaker's clips: one room, "
                        "channel and noise level), as if the speaker had been recorded again elsewhere. Either way "
                        "--normalize speaker normalises a speaker's k-th copies on their own (column copy_number), as "
                        "a speaker recorded elsewhere is at test time")
    p.add_argument("--out_dir", default=None,
                   help="folder for the copies' WAVs (default: augmented/ beside the output CSV)")
    p.add_argument("--save_csv_path", default=None,
                   help="folder for {category}_augmented.csv, the copies' list (default: --load_csv_path)")
    p.add_argument("--sr", type=positive_int, default=16000, help="sample rate of the copies (sources are resampled)")
    p.add_argument("--seed", type=seed_value, default=42, help="random seed: same seed, same copies")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="parallel processes")
    p.add_argument("--max_seconds", type=positive_float, default=MAX_SECONDS,
                   help="a source clip longer than this is reported and left out")
    return p


if __name__ == "__main__":
    answer_help(get_args_parser)  # --help answers before the slow imports below

from toolkit.features import FEATURES


def main(argv: list[str] | None = None) -> None:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    category = check_category(args.category)
    spec = parse_spec(args.transforms)
    if not spec and args.copies:
        parser.error("--transforms none makes no copies; name at least one transform")
    csv = in_folder(args.csv or f"{category}_train.csv", args.load_csv_path)
    table = training_clips(csv, category, args.split_manifest or manifest_path(args.load_csv_path, category))
    counts = copies_per_clip(table[category], args.copies, args.balance, args.seed)
    save_csv_path = output_dir(args.save_csv_path or args.load_csv_path, "--save_csv_path")
    out_csv = os.path.join(save_csv_path, f"{category}_augmented.csv")
    out_dir = output_dir(args.out_dir or os.path.join(save_csv_path, "augmented"), "--out_dir")

    rows = copy_rows(table, csv, [f.column() for f in FEATURES.values()])
    sources = rows["Audio_file_path"].tolist()
    speakers = rows["ActorID"].astype(str).tolist()
    pools = {s: [a for a, other in zip(sources, speakers) if other != s] for s in set(speakers)}  # babble: other voices
    jobs, made = [], []
    for i, (name, source, n) in enumerate(zip(rows["Audio_file_name"].astype(str), sources, counts)):
        pool = pools[speakers[i]]
        source_hash = fingerprint(source)
        for number in range(1, n + 1):
            entropy = copy_entropy(args.seed, name, number)
            drawn_for = entropy if args.condition == "clip" else copy_entropy(args.seed, f"speaker {speakers[i]}", number)
            chain = plan(drawn_for, spec, args.sr, bool(pool))
            copy = copy_name(name, number, source_hash, entropy, chain, args.sr)
            jobs.append(CopyJob(source, os.path.join(out_dir, copy), tuple(chain), entropy, args.sr,
                                babble_sources(entropy, chain, pool), args.max_seconds))
            made.append({**rows.iloc[i].to_dict(), "Audio_file_name": copy, COPY_COLUMN: name,
                         COPY_NUMBER_COLUMN: number, "transform": describe(chain)})
    todo = sum(not os.path.exists(j.out) for j in jobs)
    print(f"{len(table)} training clips, {len(jobs)} copies ({len(jobs) - todo} already written, {todo} to make) in {out_dir}")
    workers = min(args.workers, max(todo, 1))
    errors = {out: error for out, error in parallel_map(write_copy, jobs, workers, desc="copies") if error}
    copies = pd.DataFrame([m for m, j in zip(made, jobs) if j.out not in errors])
    if copies.empty:
        write_csv(pd.DataFrame(columns=[*rows.columns, COPY_COLUMN, COPY_NUMBER_COLUMN, "transform"]), out_csv)
    else:
        copies["Audio_file_path"] = [relative_to_csv(os.path.join(out_dir, c), out_csv) for c in copies["Audio_file_name"]]
        write_csv(copies, out_csv)
    per_class = ", ".join(f"{k} {v}" for k, v in
                          pd.concat([table[category], copies.get(category, pd.Series(dtype=str))]).value_counts().items())
    print(f"wrote {out_csv}: {len(copies)} copies of {len(table)} clips (with the originals: {per_class})")
    if errors:
        print(f"warning: {len(errors)} copies could not be made and are left out, e.g. {next(iter(errors.values()))}")
    print(f"next: generate_mel_spectrograms.py ... --category {category} --augmented_csv {out_csv}")


if __name__ == "__main__":
    run_main(main)
