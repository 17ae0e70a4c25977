"""Late fusion of cross-validation runs of different feature types, scored on the held-out folds and on other corpora.

Each run is a `train_cnn.py --folds K` summary ({model}_{category}_cv.json) with the same folds (fold assignment is a
function of the speakers and the seed only, so eGeMAPS and LTAS runs of one seed share them). For every fold, each
run's fold model gives calibrated probabilities (its card's input standardisation and temperature, as predict.py
uses them); the fusion is their mean (optionally weighted: toolkit/evaluation/fusion.py). On each fold's test speakers
it is the fused cross-validation evaluate.py --cv_run writes (toolkit/training/crossval.py, which also checks that the
folds agree); this script adds every clip of each extra corpus, whose stage-2 folder of each run's feature type is
given in the same order as the runs:

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

from compare_heads import named_folders  # noqa: E402
from models import load_trained_model  # noqa: E402
from toolkit.cli import run_main  # noqa: E402
from toolkit.evaluation.fusion import fuse  # noqa: E402
from toolkit.evaluation.metrics import breakdown, classification_metrics  # noqa: E402
from toolkit.fileio import write_json  # noqa: E402
from toolkit.training.crossval import aligned, fuse_cross_validations  # noqa: E402
from toolkit.training.data import load_split  # noqa: E402
from toolkit.training.engine import evaluate  # noqa: E402

_SETS: dict = {}  # (folder, normalize, input options) -> FeatureSet: every fold model of a run reads the same clips


def fold_model(cv_json: str, fold: int) -> str:
    stem = os.path.basename(cv_json).removesuffix("_cv.json")
    return os.path.join(os.path.dirname(cv_json), f"{stem}_cv", f"fold{fold}", f"{stem}.pt")


def probabilities(pt: str, folder: str) -> pd.DataFrame:
    """A fold model's calibrated probabilities (columns p_<class>) on every clip of a stage-2 folder, with each clip's
    Audio_file_name, ActorID and label index."""
    model, card = load_trained_model(pt)
    key = (folder, card.normalize, repr(sorted(card.input_options.items())))
    if key not in _SETS:
        csvs = [os.path.join(folder, f"{card.category}_{s}.csv") for s in ("train", "val", "test")]
        _SETS[key] = load_split(csvs, card.category, options=card.input_options, normalize=card.normalize,
                                classes=card.classes, desc=os.path.basename(folder))
    data = _SETS[key]
    data.stats = card.features["stats"]
    raw = evaluate(model, data, 256, torch.device("cpu"), len(card.classes), temperature=card.temperature)
    probs = pd.DataFrame(np.asarray(raw["probabilities"]), columns=[f"p_{c}" for c in card.classes])
    return pd.concat([data.frame[["Audio_file_name", "ActorID"]].reset_index(drop=True), probs,
                      pd.Series(data.labels.numpy(), name="label")], axis=1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", nargs="+", required=True, help="{model}_{category}_cv.json of each member, same folds")
    p.add_argument("--weights", type=float, nargs="+", default=None, help="one per run (default: equal)")
    p.add_argument("--extra", nargs="*", default=[], metavar="NAME=FOLDER,FOLDER",
                   help="a corpus scored by every fold's fusion: its stage-2 folder for each run's feature type, in order")
    p.add_argument("--out", required=True, help="folder for the fused cross-validation and fused.json")
    args = p.parse_args(argv)
    extras = named_folders(args.extra, "--extra", p)
    cv = fuse_cross_validations(args.run, args.weights, args.out)
    classes = cv["run"]["classes"]
    result = {"runs": args.run, "weights": args.weights, "extra": {n: [] for n in extras}}
    for i in range(1, cv["folds"] + 1):
        for name, folders in extras.items():
            first, probs = aligned([probabilities(fold_model(r, i), f) for r, f in zip(args.run, folders)], classes)
            y, pred = first["label"].to_numpy(), fuse(probs, args.weights).argmax(1)
            result["extra"][name].append({**classification_metrics(y, pred, len(classes)),
                                          **breakdown(first, y, pred, classes)})
        print(f"fold {i}:" + "".join(f" {n} f1 {result['extra'][n][-1]['f1']:.4f}" for n in extras))
    summary = {"test_f1": cv["test"]["f1"]["mean"],
               **{f"{n}_f1": float(np.mean([f["f1"] for f in result["extra"][n]])) for n in extras}}
    for n in extras:
        speakers = pd.DataFrame([{s: v["accuracy"] for s, v in f["per_speaker"].items()} for f in result["extra"][n]]).mean()
        summary[f"{n}_worst_speaker"] = f"{speakers.idxmin()} ({speakers.min():.2f})"
    result["summary"] = summary
    write_json(result, os.path.join(args.out, "fused.json"))
    print(summary)


if __name__ == "__main__":
    run_main(main)  # a ToolkitError (e.g. runs on other folds) is one line, not a traceback
