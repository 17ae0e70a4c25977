"""Augmented copies of every clip of a corpus, for speaker cross-validation (compare_heads.py, train_cnn.py --folds).

augmentation.py copies the training part of stage 2's split only. Under --folds every speaker trains in some folds,
so here every clip is copied; train_cnn.py --folds (toolkit/training/crossval.py) then trains a copy only in the
folds whose training part holds its speaker and never validates or tests on one, and the folds are those of the
originals alone (the same as without copies; compare_heads.py's scikit-learn baselines do the same). Three steps,
each a stage script run as a user runs it:
  1. augmentation.py on stage 1's CSV, with a split manifest (in --out) whose training part is every clip;
  2. generate_mel_spectrograms.py on the originals and copies as one corpus (the copies' source column renamed so that
     stage 2 treats them as clips; the originals' features are reused from --spec_path, where stage 2 wrote them);
  3. the source column put back in the three split CSVs: --out/{features}/ is a stage-2 folder for compare_heads.py.

    python3 experiments/fold_copies.py --corpus Data/demo91 --spec_path Data/demo91 --category sex \\
        --transforms f0:1 --copies 2 --out Data/demo91/copies_f0
    python3 experiments/compare_heads.py --data Data/demo91/copies_f0/egemaps --out Models/heads_f0 --categories sex
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from compare_recipes import run  # noqa: E402
from toolkit.augmentation.copies import STAGE1_SUFFIX  # noqa: E402
from toolkit.fileio import write_csv, write_json  # noqa: E402
from toolkit.io.splits import COPY_COLUMN  # noqa: E402

AS_CLIP = "copy_of"  # the copies' source column while stage 2 features them as clips of their own


def absolute_paths(frame: pd.DataFrame, csv: str) -> pd.DataFrame:
    folder = os.path.dirname(os.path.abspath(csv))
    return frame.assign(Audio_file_path=[os.path.normpath(os.path.join(folder, p)) for p in frame["Audio_file_path"]])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="stage 1's folder: {category}_with_audio_path.csv")
    p.add_argument("--spec_path", required=True, help="the corpus's stage-2 --save_spec_path (its features are reused)")
    p.add_argument("--category", required=True)
    p.add_argument("--features", default="egemaps", help="generate_mel_spectrograms.py --features")
    p.add_argument("--transforms", required=True, help="augmentation.py --transforms")
    p.add_argument("--copies", type=int, default=2, help="augmentation.py --copies")
    p.add_argument("--condition", default="clip", help="augmentation.py --condition")
    p.add_argument("--seed", type=int, default=42, help="augmentation.py --seed")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", required=True, help="folder for the copies (shared by the categories) and the stage-2 CSVs")
    args = p.parse_args(argv)

    stage1 = os.path.join(args.corpus, f"{args.category}{STAGE1_SUFFIX}")
    clips = absolute_paths(pd.read_csv(stage1, dtype=str, keep_default_na=False), stage1)
    split = os.path.join(args.out, f"split_{args.category}")
    os.makedirs(split, exist_ok=True)
    names = {part: f"{args.category}_{part}.csv" for part in ("train", "val", "test")}
    write_csv(clips, os.path.join(split, names["train"]))
    held = pd.DataFrame([{"Audio_file_name": "(none).wav", "Audio_file_path": "(none).wav", "ActorID": "(none)"}])
    for part in ("val", "test"):  # no clip is held out (a CSV may not be empty: one row that names no clip)
        write_csv(held, os.path.join(split, names[part]))
    write_json({"csvs": names, "category": args.category}, os.path.join(split, f"{args.category}_split.json"))
    run("augmentation.py", "--load_csv_path", args.corpus, "--csv", stage1, "--category", args.category,
        "--split_manifest", os.path.join(split, f"{args.category}_split.json"), "--copies", str(args.copies),
        "--transforms", args.transforms, "--seed", str(args.seed), "--condition", args.condition,
        "--workers", str(args.workers), "--save_csv_path", args.out,
        log=os.path.join(args.out, f"augmentation_{args.category}.log"))

    augmented = os.path.join(args.out, f"{args.category}_augmented.csv")
    copies = absolute_paths(pd.read_csv(augmented, dtype=str, keep_default_na=False), augmented)
    corpus = os.path.join(args.out, f"corpus_{args.category}")
    os.makedirs(corpus, exist_ok=True)
    write_csv(pd.concat([clips, copies.rename(columns={COPY_COLUMN: AS_CLIP})], ignore_index=True),
              os.path.join(corpus, f"{args.category}{STAGE1_SUFFIX}"))
    labels = stage1.replace(".csv", ".json")
    if os.path.isfile(labels):
        shutil.copy(labels, os.path.join(corpus, os.path.basename(labels)))
    features = os.path.join(args.out, args.features)
    run("generate_mel_spectrograms.py", "--load_csv_path", corpus, "--save_spec_path", args.spec_path,
        "--save_csv_path", features, "--category", args.category, "--features", args.features,
        "--workers", str(args.workers), log=os.path.join(args.out, f"stage2_{args.category}.log"))
    for part in names.values():
        csv = os.path.join(features, part)
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
        write_csv(frame.rename(columns={AS_CLIP: COPY_COLUMN}), csv)
    print(f"{features}: {len(clips)} clips and {len(copies)} copies ({args.transforms}), for compare_heads.py --data")


if __name__ == "__main__":
    main()
