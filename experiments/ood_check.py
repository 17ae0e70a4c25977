"""How the out-of-domain flag behaves: how often it fires in domain and on unseen kinds of voices, and how accurate
the model is on flagged and unflagged recordings.

Each labelled CSV (a split CSV or stage 1's {category}_with_audio_path.csv: Audio_file_path and the category's
column) is classified through the Python API (predict.py's numbers: windows, calibration, distance, flag).

    python3 experiments/ood_check.py --model m/cnn3_sex.pt --sets test=d/sex_test.csv unseen=u/sex_with_audio_path.csv \
        --markdown ood.md
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from models.api import load_classifier  # noqa: E402
from toolkit.fileio import resolve_from_csv  # noqa: E402


def scored(clf, csv: str) -> pd.DataFrame:
    table = pd.read_csv(csv)
    rows = []
    for path, label in zip(table["Audio_file_path"], table[clf.card.category]):
        result = clf.predict(resolve_from_csv(str(path), csv))
        rows.append({"label": label, "predicted": result.predicted, "distance": result.distance,
                     "flagged": result.unlike_training})
    return pd.DataFrame(rows)


def summary(name: str, frame: pd.DataFrame) -> dict:
    correct = frame["label"] == frame["predicted"]
    flagged = frame["flagged"].astype(bool)

    def accuracy(mask) -> float | None:
        return round(float(correct[mask].mean()), 3) if mask.any() else None

    return {"set": name, "files": len(frame), "flagged": int(flagged.sum()), "flag_rate": round(float(flagged.mean()), 3),
            "median_distance": round(float(frame["distance"].median()), 2), "accuracy": accuracy(flagged | ~flagged),
            "accuracy_flagged": accuracy(flagged), "accuracy_unflagged": accuracy(~flagged)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a trained .pt whose run card has the training summary (domain)")
    ap.add_argument("--sets", nargs="+", required=True, metavar="NAME=CSV", help="labelled CSVs to classify")
    ap.add_argument("--markdown", default=None, help="also write the table here")
    ap.add_argument("--json", default=None, help="and the numbers here")
    args = ap.parse_args()
    clf = load_classifier(args.model, device="cpu", threads=1)
    if clf.card.domain is None:
        sys.exit(f"{args.model}: its run card has no training summary (trained before the flag existed); re-train it")
    frames = {name: scored(clf, csv) for name, csv in (s.split("=", 1) for s in args.sets)}
    frames["all"] = pd.concat(frames.values(), ignore_index=True)
    results = [summary(name, frame) for name, frame in frames.items()]
    threshold = clf.card.domain["threshold"]
    lines = [f"threshold {threshold:.2f} (99th percentile of {clf.card.domain['val_items']} validation clips' distances)",
             "", "| set | files | flagged | flag rate | median distance | accuracy | accuracy flagged | accuracy unflagged |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['files']} | {r['flagged']} | {r['flag_rate']:.3f} | {r['median_distance']:.2f} | "
              f"{r['accuracy']} | {r['accuracy_flagged']} | {r['accuracy_unflagged']} |" for r in results]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threshold": threshold, "sets": results}, f, indent=2)


if __name__ == "__main__":
    main()
