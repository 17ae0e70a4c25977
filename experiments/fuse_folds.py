"""Late fusion of cross-validation runs of different feature types, scored on the held-out folds and on other corpora.

Each run is a `train_cnn.py --folds K` summary ({model}_{category}_cv.json) with the same folds (fold assignment is a
function of the speakers and the seed only, so eGeMAPS and LTAS runs of one seed share them). For every fold, each
run's fold model gives calibrated probabilities (its card's input standardisation and temperature, as predict.py
uses them); the fusion is their mean (optionally weighted). Scored on each fold's test speakers (pooled over folds:
the fused cross-validation evaluate.py --cv_run writes) and on every clip of each extra corpus, whose stage-2 folder of
each run's feature type is given in the same order as the runs:

    python3 experiments/fuse_folds.py --run Models/e/mlp_emotion_cv.json Models/l/mlp_emotion_cv.json \\
        --extra wide=Data/wide/egemaps,Data/wide/ltas --out Models/fused
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models import load_trained_model  # noqa: E402
from toolkit.evaluation.metrics import breakdown, classification_metrics  # noqa: E402
from toolkit.fileio import read_json, write_json  # noqa: E402
from toolkit.runcard import read_card  # noqa: E402
from toolkit.training.data import load_split  # noqa: E402
from toolkit.training.engine import evaluate  # noqa: E402

CLIP = "Audio_file_name"


def fold_card(cv_json: str, fold: int) -> str:
    stem = os.path.basename(cv_json)[: -len("_cv.json")]
    return os.path.join(os.path.dirname(cv_json), f"{stem}_cv", f"fold{fold}", f"{stem}.pt")


def probabilities(pt: str, folder: str, category: str) -> pd.DataFrame:
    """A fold model's calibrated probabilities on every clip of a stage-2 folder, indexed by clip, with the label."""
    model, card = load_trained_model(pt)
    csvs = [os.path.join(folder, f"{category}_{s}.csv") for s in ("train", "val", "test")]
    data = load_split(csvs, category, options=card.input_options, normalize=card.normalize,
                      classes=card.classes, desc=os.path.basename(folder))
    data.stats = card.features["stats"]
    raw = evaluate(model, data, 256, torch.device("cpu"), len(card.classes), temperature=card.temperature)
    frame = data.frame[[CLIP, "ActorID"]].reset_index(drop=True)
    probs = pd.DataFrame(np.asarray(raw["probabilities"]), columns=card.classes)
    return pd.concat([frame, probs, pd.Series(data.labels.numpy(), name="label")], axis=1).set_index(CLIP)


def fused_scores(parts: list[pd.DataFrame], weights: np.ndarray, classes: list[str]) -> dict:
    common = parts[0].index
    for p in parts[1:]:
        common = common.intersection(p.index)
    probs = sum(w * p.loc[common, classes].to_numpy() for w, p in zip(weights, parts))
    first = parts[0].loc[common]
    y, pred = first["label"].to_numpy(), probs.argmax(1)
    frame = first.reset_index()[[CLIP, "ActorID"]]
    return {**classification_metrics(y, pred, len(classes)), **breakdown(frame, y, pred, classes)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", nargs="+", required=True, help="{model}_{category}_cv.json of each member, same folds")
    p.add_argument("--weights", type=float, nargs="+", default=None, help="one per run (default: equal)")
    p.add_argument("--extra", nargs="*", default=[], metavar="NAME=FOLDER,FOLDER",
                   help="a corpus scored by every fold's fusion: its stage-2 folder for each run's feature type, in order")
    p.add_argument("--out", required=True, help="folder for fused.json")
    args = p.parse_args(argv)
    cvs = [read_json(r, "cross-validation summary") for r in args.run]
    folds = [tuple(tuple(f["test_speakers"]) for f in cv["fold_results"]) for cv in cvs]
    if len(set(folds)) != 1:
        sys.exit("error: the runs were not tested on the same folds (another seed or corpus)")
    weights = np.asarray(args.weights or [1.0] * len(cvs), float)
    weights = weights / weights.sum()
    extras = {name: folders.split(",") for name, folders in (e.split("=", 1) for e in args.extra)}
    first = read_card(fold_card(args.run[0], 1))
    category, classes = first.category, first.classes
    result = {"runs": args.run, "weights": weights.tolist(), "folds": [], "extra": {n: [] for n in extras}}
    for i, fold in enumerate(cvs[0]["fold_results"], start=1):
        pts = [fold_card(r, i) for r in args.run]
        tests = [pd.read_csv(os.path.join(os.path.dirname(pt), os.path.basename(pt)[:-3] + "_test_predictions.csv"))
                 .set_index(CLIP).rename(columns=lambda c: c[2:] if c.startswith("p_") else c) for pt in pts]
        for t in tests:
            t["label"] = [classes.index(v) for v in t[category].astype(str)]
        result["folds"].append(fused_scores(tests, weights, classes))
        for name, folders in extras.items():
            result["extra"][name].append(fused_scores([probabilities(pt, f, category) for pt, f in zip(pts, folders)],
                                                      weights, classes))
        print(f"fold {i}: test f1 {result['folds'][-1]['f1']:.4f}"
              + "".join(f", {n} f1 {result['extra'][n][-1]['f1']:.4f}" for n in extras))
    summary = {"test_f1": float(np.mean([f["f1"] for f in result["folds"]])),
               **{f"{n}_f1": float(np.mean([f["f1"] for f in result["extra"][n]])) for n in extras}}
    for n in extras:
        speakers = pd.DataFrame([{s: v["accuracy"] for s, v in f["per_speaker"].items()} for f in result["extra"][n]]).mean()
        summary[f"{n}_worst_speaker"] = f"{speakers.idxmin()} ({speakers.min():.2f})"
    result["summary"] = summary
    os.makedirs(args.out, exist_ok=True)
    write_json(result, os.path.join(args.out, "fused.json"))
    print(summary)


if __name__ == "__main__":
    main()
