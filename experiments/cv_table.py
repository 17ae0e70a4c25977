"""The speaker cross-validation table of any model's finished `train_cnn.py --folds` runs (one run folder per seed),
in compare_heads.py's form, beside compare_heads.py's rows (scikit-learn baselines, vector heads) on the same folds.

compare_heads.py trains and tabulates heads on vector features; a model on images (cnn3, frame_mlp) is trained with
`train_cnn.py --folds K --seed S --extra_test_csv ...` as a user types it, and this script puts its runs in the same
table: weighted F1 mean ± sd over the seeds' fold means, the worst speaker, and for each --extra corpus the F1 of the
fold models on all its clips (its split CSVs pooled) and the worst speaker; then accuracy per voice family where the
corpus lists them (voice_families.csv). --beside NAME=DIR adds the rows of a compare_heads.py output folder, after
checking that its runs of each seed tested the same speakers in every fold (fold assignment depends only on the
speakers, the seed and K, not on the feature type).

    python3 experiments/cv_table.py --runs Models/fm_42 Models/fm_43 Models/fm_44 --model frame_mlp --category sex \\
        --extra widedev=Data/widedev/mel wide=Data/wide/mel --beside egemaps=Models/heads_egemaps
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from compare_heads import (family_table, named, over_seeds, seeds_table, summarise, toolkit_result,  # noqa: E402
                           write_outputs)
from toolkit.fileio import read_json  # noqa: E402


def weighted_f1(confusion: np.ndarray) -> float:
    """Weighted F1 from a confusion matrix (rows: true classes), as the toolkit's metrics give it."""
    true, predicted, right = confusion.sum(1), confusion.sum(0), np.diag(confusion)
    f1 = np.divide(2 * right, true + predicted, out=np.zeros(len(right)), where=true + predicted > 0)
    return float((f1 * true).sum() / true.sum())


def pooled(results: list[dict]) -> dict:
    """One corpus's split CSVs scored by one fold model, as one set: F1 from the summed confusion matrices."""
    confusion = sum(np.asarray(r["confusion_matrix"]) for r in results)
    return {"f1": weighted_f1(confusion), "per_speaker": {s: v for r in results for s, v in r["per_speaker"].items()}}


def run_rows(runs: list[str], model: str, category: str, extras: dict[str, str], name: str) -> tuple[list, dict]:
    """Per seed, the run's summary row (compare_heads.summarise) and its folds' test speakers."""
    per_seed, folds = {}, {}
    for folder in runs:
        cv = read_json(os.path.join(folder, f"{model}_{category}_cv.json"), "cross-validation summary")
        seed = read_json(os.path.join(folder, f"{model}_{category}_cv", "fold1", f"{model}_{category}.json"),
                         "fold card")["training"]["seed"]
        result = toolkit_result(folder, model, category, cv, {})  # its "extra" filled below, each corpus pooled
        for corpus, where in extras.items():
            where = os.path.abspath(where) + os.sep
            parts = [[r for csv, r in f["extra_tests"].items() if os.path.abspath(csv).startswith(where)]
                     for f in cv["fold_results"]]
            if not all(parts):
                sys.exit(f"error: {folder}: its folds were not scored on {where} (train_cnn.py --extra_test_csv)")
            result["extra"][corpus] = [pooled(p) for p in parts]
        per_seed[seed] = [{"category": category, "normalize": "none", **summarise(name, result)}]
        folds[seed] = [sorted(f["test_speakers"]) for f in cv["fold_results"]]
    return per_seed, folds


def beside_rows(label: str, folder: str, category: str, folds: dict[int, list], extras: list[str]) -> list[dict]:
    """compare_heads.py's rows (over its seeds) of `category` without normalisation, once its folds are checked."""
    for seed, expected in folds.items():
        runs = os.path.join(folder, f"seed{seed}")  # compare_heads.py's layout with several seeds; with one, the folder
        runs = runs if os.path.isdir(runs) else folder
        checked = glob.glob(os.path.join(runs, f"{category}_none", "**", "*_cv.json"), recursive=True)
        if not checked:
            sys.exit(f"error: {folder}: no {category} run of seed {seed} (compare_heads.py --seed {seed}) to check the folds of")
        for cv_path in checked:
            tested = [sorted(f["test_speakers"]) for f in read_json(cv_path, "cross-validation summary")["fold_results"]]
            if tested != expected:
                sys.exit(f"error: {cv_path}: other folds than the runs' of seed {seed}; compare on the same folds")
    rows = [r for r in read_json(os.path.join(folder, "compare_heads.json"), "compare_heads.py table")
            if r["category"] == category and r["normalize"] == "none"]
    missing = sorted({e for r in rows for e in extras if e not in r["extra"]})
    if missing:
        sys.exit(f"error: {folder}: not scored on {', '.join(missing)}; name each --extra corpus as compare_heads.py --extra did")
    if rows and "worst_lowest" not in rows[0]:  # one seed: its rows are per fold, made over-seed rows of one seed
        rows = over_seeds({0: rows}, extras)
    return [{**r, "name": f"{label}: {r['name']}"} for r in rows]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="train_cnn.py --folds output folders, one per seed")
    p.add_argument("--model", required=True)
    p.add_argument("--category", required=True)
    p.add_argument("--name", default=None, help="the runs' row name (default: toolkit MODEL)")
    p.add_argument("--extra", nargs="*", default=[], metavar="NAME=FOLDER",
                   help="corpora the runs' folds were scored on: the folder of their --extra_test_csv CSVs")
    p.add_argument("--beside", nargs="*", default=[], metavar="NAME=DIR", help="compare_heads.py --out folders")
    p.add_argument("--out", default=None, help="also write the table (.md) and rows (.json) here")
    args = p.parse_args(argv)
    extras = named(args.extra, "--extra", p)
    per_seed, folds = run_rows(args.runs, args.model, args.category, extras, args.name or f"toolkit {args.model}")
    rows = [r for label, folder in named(args.beside, "--beside", p).items()
            for r in beside_rows(label, folder, args.category, folds, list(extras))]
    rows += over_seeds(per_seed, list(extras))
    text = (f"{len(per_seed)} seeds ({' '.join(map(str, per_seed))}), the same folds in every row of a seed.\n\n"
            + seeds_table(rows, list(extras)) + "\n\n" + family_table(rows, extras))
    print(text)
    if args.out:
        write_outputs(args.out, text, rows, "cv_table")


if __name__ == "__main__":
    main()
