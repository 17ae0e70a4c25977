"""The speaker cross-validation table of any model's finished `train_cnn.py --folds` runs (one run folder per seed),
in compare_heads.py's form, beside compare_heads.py's rows (scikit-learn baselines, vector heads) on the same folds.

compare_heads.py trains and tabulates heads on vector features; a model on images (cnn3, frame_mlp) is trained with
`train_cnn.py --folds K --seed S --extra_test_csv ...` as a user types it, and this script puts its runs in the same
table: weighted F1 mean ± sd over the seeds' fold means, the worst speaker, and for each --extra corpus the F1 of the
fold models on all its clips (its split CSVs pooled) and the worst speaker; then accuracy per voice family where the
corpus lists them (voice_families.csv). --beside NAME=DIR adds the rows of a compare_heads.py output folder, after
checking that its runs of each seed tested the same speakers in every fold (fold assignment depends only on the
speakers, the seed and K, not on the feature type). Each --runs is one row, so several models, feature types and
fusions (a fuse_folds.py --out folder counts as a run: its fused cross-validation) share one table; every row of a seed
must have tested the same folds.

    python3 experiments/cv_table.py --runs Models/fm_42 Models/fm_43 Models/fm_44 --model frame_mlp --category sex \\
        --extra widedev=Data/widedev/mel wide=Data/wide/mel --beside egemaps=Models/heads_egemaps
    python3 experiments/cv_table.py --category emotion --runs Models/c_42 Models/c_43 --name "ComParE linear" \\
        --runs Models/fused_42 Models/fused_43 --extra wide=Data/wide/compare,Data/wide/egemaps
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from compare_heads import (family_table, named, named_folders, over_seeds, seeds_table, summarise,  # noqa: E402
                           toolkit_result, write_outputs)
from toolkit.cli import run_main  # noqa: E402
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


def cv_summary(folder: str, model: str | None, category: str) -> tuple[str, str | None]:
    """(the folder's cross-validation summary, its fuse_folds.py extras file or None): a fuse_folds.py --out folder
    (fused.json), else a train_cnn.py --folds output folder with one model (or --model's) of the category."""
    if folder.endswith(f"_{category}_cv.json"):  # the summary itself, where a folder holds several models' runs
        return folder, None
    if os.path.isfile(os.path.join(folder, "fused.json")):
        return os.path.join(folder, f"fused_{category}_cv.json"), os.path.join(folder, "fused.json")
    found = sorted(glob.glob(os.path.join(folder, f"{model or '*'}_{category}_cv.json")))
    if len(found) != 1:
        sys.exit(f"error: {folder}: {len(found)} {category} cross-validation summaries ({model or 'any model'}); "
                 f"pass --model, or one train_cnn.py --folds output folder per seed")
    return found[0], None


def fold_card(cv_json: str) -> dict:
    """The first fold's run card of a train_cnn.py --folds summary: its seed and normalisation are the run's."""
    stem = os.path.basename(cv_json).removesuffix("_cv.json")
    return read_json(os.path.join(cv_json.removesuffix(".json"), "fold1", f"{stem}.json"), "fold card")


def run_rows(runs: list[str], model: str | None, category: str, extras: dict[str, list[str]],
             name: str | None) -> tuple[dict, dict]:
    """Per seed, the run's summary row (compare_heads.summarise) and its folds' test speakers. A fuse_folds.py folder
    counts as a run: its fused cross-validation, and its members' seed and normalisation."""
    per_seed, folds = {}, {}
    for folder in runs:
        cv_json, fused_json = cv_summary(folder, model, category)
        cv = read_json(cv_json, "cross-validation summary")
        fused = read_json(fused_json, "fusion summary") if fused_json else None
        card = fold_card(fused["runs"][0] if fused else cv_json)
        if fused:  # fuse_folds.py scored every clip of each extra corpus with each fold's fused members
            missing = [c for c in extras if c not in fused["extra"]]
            if missing:
                sys.exit(f"error: {fused_json}: not scored on {', '.join(missing)}; name each --extra corpus as "
                         f"fuse_folds.py --extra did")
            result = {"folds": [f["test"] for f in cv["fold_results"]], "worst": cv["pooled_test"]["worst_speaker"],
                      "extra": {corpus: fused["extra"][corpus] for corpus in extras}}
            label = name or "fused " + " + ".join(fold_card(r)["model"] for r in fused["runs"])
        else:
            result = toolkit_result(os.path.dirname(cv_json), card["model"], category, cv, {})  # extra: below
            for corpus, where in extras.items():  # a corpus's folders: one per feature type of the rows
                where = tuple(os.path.abspath(w) + os.sep for w in where)
                parts = [[r for csv, r in f["extra_tests"].items() if os.path.abspath(csv).startswith(where)]
                         for f in cv["fold_results"]]
                if not all(parts):
                    sys.exit(f"error: {folder}: its folds were not scored on {' or '.join(where)} (train_cnn.py "
                             f"--extra_test_csv)")
                result["extra"][corpus] = [pooled(p) for p in parts]  # each corpus's split CSVs pooled
            label = name or f"toolkit {card['model']}"
        seed = card["training"]["seed"]
        per_seed[seed] = [{"category": category, "normalize": card.get("normalize") or "none",
                           **summarise(label, result)}]
        folds[seed] = [sorted(f["test_speakers"]) for f in cv["fold_results"]]
    return per_seed, folds


def beside_rows(label: str, folder: str, category: str, normalize: str, folds: dict[int, list],
                extras: list[str]) -> list[dict]:
    """compare_heads.py's rows (over its seeds) of `category` and `normalize`, once its folds are checked."""
    for seed, expected in folds.items():
        runs = os.path.join(folder, f"seed{seed}")  # compare_heads.py's layout with several seeds; with one, the folder
        runs = runs if os.path.isdir(runs) else folder
        checked = glob.glob(os.path.join(runs, f"{category}_{normalize}", "**", "*_cv.json"), recursive=True)
        if not checked:
            sys.exit(f"error: {folder}: no {category} run of seed {seed} (compare_heads.py --seed {seed}) to check the folds of")
        for cv_path in checked:
            tested = [sorted(f["test_speakers"]) for f in read_json(cv_path, "cross-validation summary")["fold_results"]]
            if tested != expected:
                sys.exit(f"error: {cv_path}: other folds than the runs' of seed {seed}; compare on the same folds")
    rows = [r for r in read_json(os.path.join(folder, "compare_heads.json"), "compare_heads.py table")
            if r["category"] == category and r["normalize"] == normalize]
    missing = sorted({e for r in rows for e in extras if e not in r["extra"]})
    if missing:
        sys.exit(f"error: {folder}: not scored on {', '.join(missing)}; name each --extra corpus as compare_heads.py --extra did")
    if rows and "worst_lowest" not in rows[0]:  # one seed: its rows are per fold, made over-seed rows of one seed
        rows = over_seeds({0: rows}, extras)
    return [{**r, "name": f"{label}: {r['name']}"} for r in rows]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", action="append", required=True,
                   help="one row: its train_cnn.py --folds output folders (or their {model}_{category}_cv.json, or "
                        "fuse_folds.py --out folders), one per seed; repeat --runs for more rows (every row of a seed "
                        "on the same folds)")
    p.add_argument("--model", default=None, help="the model whose runs to read, where a folder holds several")
    p.add_argument("--category", required=True)
    p.add_argument("--name", action="append", default=None,
                   help="each --runs row's name, in order (default: toolkit MODEL, or fused MODEL + MODEL)")
    p.add_argument("--extra", nargs="*", default=[], metavar="NAME=FOLDER[,FOLDER]",
                   help="corpora the runs' folds were scored on: the folder of their --extra_test_csv CSVs, one per "
                        "feature type of the rows (a fusion's: its fuse_folds.py --extra NAME)")
    p.add_argument("--beside", nargs="*", default=[], metavar="NAME=DIR", help="compare_heads.py --out folders")
    p.add_argument("--out", default=None, help="also write the table (.md) and rows (.json) here")
    args = p.parse_args(argv)
    if args.name is not None and len(args.name) != len(args.runs):
        p.error(f"{len(args.name)} --name for {len(args.runs)} --runs rows: give one each, or none")
    extras = named_folders(args.extra, "--extra", p)
    per_seed: dict[int, list] = {}
    folds: dict[int, list] = {}
    for i, runs in enumerate(args.runs):
        rows_of, folds_of = run_rows(runs, args.model, args.category, extras, args.name[i] if args.name else None)
        for seed, tested in folds_of.items():
            if folds.setdefault(seed, tested) != tested:
                sys.exit(f"error: {runs[0]}: other folds than the first row's of seed {seed}; compare on the same folds")
            per_seed.setdefault(seed, []).extend(rows_of[seed])
    normalize = next(iter(per_seed.values()))[0]["normalize"]
    rows = [r for label, folder in named(args.beside, "--beside", p).items()
            for r in beside_rows(label, folder, args.category, normalize, folds, list(extras))]
    rows += over_seeds(per_seed, list(extras))
    text = (f"{len(per_seed)} seeds ({' '.join(map(str, per_seed))}), the same folds in every row of a seed.\n\n"
            + seeds_table(rows, list(extras)) + "\n\n"
            + family_table(rows, {corpus: where[0] for corpus, where in extras.items()}))
    print(text)
    if args.out:
        write_outputs(args.out, text, rows, "cv_table")


if __name__ == "__main__":
    run_main(main)
