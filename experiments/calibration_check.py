"""How well a trained model's probabilities are calibrated, in and out of domain, at several temperatures.

For each model (.pt with its run card) it scores the validation and test CSVs of its training run and any other
labelled CSVs (e.g. a corpus of unseen kinds of voices) as the evaluation does (the card's windows and inputs), then
reports weighted F1, negative log-likelihood and expected calibration error at: T = 1 (uncalibrated), the
temperature fitted on validation with no lower bound but 0.05 (sharpening allowed), the toolkit's fit (T >= 1,
soften only), and the card's own temperature.

    python3 experiments/calibration_check.py --models m/cnn3_sex/cnn3_sex.pt m/mlp_sex/mlp_sex.pt \
        --extra unseen/sex_all.csv unseen/egemaps/sex_all.csv --markdown calibration.md

--extra takes one CSV per model, in the same order (a model's features decide which CSV it can read); '-' for none.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from toolkit.training.data import load_split  # noqa: E402
from toolkit.training.engine import item_logits, metrics_of  # noqa: E402
from models import load_trained_model  # noqa: E402
from toolkit.evaluation.metrics import fit_temperature  # noqa: E402


def scored(model, card, csv: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_split(csv, card.category, options=card.input_options, normalize=card.normalize, classes=card.classes)
    data.stats = card.features["stats"]
    windows = card.training.get("eval_windows") == "all"
    return item_logits(model, data, 256, torch.device("cpu"), windows), data.labels.cpu()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--extra", nargs="*", default=[], help="one labelled CSV per model (or '-'), scored as 'unseen'")
    ap.add_argument("--markdown", default=None, help="also write the table here")
    args = ap.parse_args()
    rows = ["| model | set | T | weighted F1 | NLL | ECE |", "|---|---|---|---|---|---|"]
    for i, pt in enumerate(args.models):
        model, card = load_trained_model(pt)
        sets = {s: card.split["csvs"][s] for s in ("val", "test")}  # absolute paths, as the training run read them
        if i < len(args.extra) and args.extra[i] != "-":
            sets["unseen"] = args.extra[i]
        logits = {s: scored(model, card, c) for s, c in sets.items()}
        free, toolkit = fit_temperature(*logits["val"], low=0.05), fit_temperature(*logits["val"])
        temperatures = {"1 (none)": 1.0, f"fitted {free:.3f}": free, f"fitted, >= 1: {toolkit:.3f}": toolkit,
                        f"card {card.temperature:.3f}": card.temperature}
        name = os.path.splitext(os.path.basename(pt))[0]
        for s, (z, y) in logits.items():
            for label, t in temperatures.items():
                m = metrics_of(z, y, len(card.classes), t)
                rows.append(f"| {name} | {s} ({len(y)}) | {label} | {m['f1']:.3f} | {m['loss']:.3f} | {m['ece']:.3f} |")
    text = "\n".join(rows)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
