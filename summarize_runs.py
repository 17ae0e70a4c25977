"""Collect every training run under RUNS_DIR into one results table (like Table 1 of the seed's paper).

Example:
    python3 summarize_runs.py Models/sweep/

Finds the *_metrics.json files that train_cnn.py, cnn_classifier.py and pseudo_labeling_semisupervised.py write
(at any depth; cross-validation folds are left out: their summary is the run's _cv.json), prints one markdown
row per run (category, model, features, pre-training, split, training recipe, epochs, best epoch, test accuracy,
weighted F1, precision, recall, seconds), and saves it as CSV plus a bar chart of test weighted F1 per category and model.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import argparse
import math
import os

from toolkit.cli import Parser, answer_help, run_main, split_csv
from toolkit.errors import ToolkitError
from toolkit.fileio import output_dir, read_csv, read_json, write_csv
from toolkit.io.labels import CATEGORIES
from toolkit.runcard import CV_FOLD, RunCard

COLUMNS = ["category", "model", "features", "pre-training", "split", "recipe", "epochs", "best epoch", "test accuracy", "weighted F1",
           "precision", "recall", "seconds", "run", "untested classes"]


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="folder searched (with its subfolders) for *_metrics.json")
    p.add_argument("--out", default=None, metavar="CSV", help="the table as CSV (default: RUNS_DIR/runs_summary.csv)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="bar chart of test weighted F1 per category and model (default: RUNS_DIR/runs_f1.png)")
    return p


if __name__ == "__main__":
    answer_help(get_args_parser)  # --help answers before the slow imports below

import pandas as pd

from models import MODEL_NAMES
from toolkit.evaluation.plots import plot_grouped_bars


def find_runs(runs_dir: str) -> list[str]:
    """Every *_metrics.json below runs_dir, sorted, cross-validation folds excluded."""
    found = []
    for folder, dirs, files in os.walk(runs_dir):
        dirs.sort()
        found += [os.path.join(folder, f) for f in sorted(files) if f.endswith("_metrics.json")]
    return [f for f in found if not CV_FOLD.search(os.path.relpath(f, runs_dir))]


def split_kind(card: RunCard) -> str:
    """The split the run trained on, from its card ('speaker', 'random', ...); for cards that do not know it (runs
    from before stage 2 wrote a manifest, hand-made CSVs) measured from the CSVs themselves: 'speaker' when no
    speaker of the test CSV is in the training CSV, 'random' otherwise, '?' when they cannot be read."""
    kind = card.split.get("kind", "unknown")
    if kind != "unknown":
        return str(kind)
    csvs = dict(card.split.get("csvs") or {})
    if "test" not in csvs:  # a card of an earlier version: its command line names the CSVs
        try:
            args = argparse.Namespace(**card.args)
            csvs = {"train": csvs.get("train") or split_csv(args, "train"), "test": split_csv(args, "test")}
        except (AttributeError, TypeError):
            return "?"
    try:  # paths from a card are only followed to regular files of a sane size (never /dev/zero or a FIFO)
        train, test = (set(read_csv(str(csvs[s]), ["ActorID"])["ActorID"]) for s in ("train", "test"))
    except (ToolkitError, TypeError, KeyError):  # paths relative to another folder, or no ActorID
        return "?"
    return "random" if train & test else "speaker"


def number(value, what: str) -> float | None:
    """A metric read from a card as a number (None when absent); anything else makes the run's card unusable."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ToolkitError(f"{what} is {value!r}, not a number")
    return float(value)


def table_row(path: str, card: RunCard, history: list, runs_dir: str) -> dict:
    test = card.metrics["test"]
    return {
        "category": card.category, "model": card.model, "features": card.features["type"],
        "pre-training": card.pretraining(), "split": split_kind(card), "recipe": str(card.training.get("recipe", "seed")),
        "epochs": len(history) or number(card.training.get("epochs"), "epochs"),
        "best epoch": number(card.metrics.get("epoch"), "epoch"),
        **{column: number(test[key], key) for column, key in (("test accuracy", "accuracy"), ("weighted F1", "f1"),
                                                               ("precision", "precision"), ("recall", "recall"))},
        "seconds": number(card.metrics.get("seconds"), "seconds"),
        "run": os.path.relpath(path, runs_dir).removesuffix("_metrics.json"),
        "untested classes": untested_classes(test),
    }


def untested_classes(test: dict) -> str:
    """The classes without a clip in the test split (a class of one speaker, say): the scores say nothing about them,
    and a weighted F1 of 1.000 over the others looks like a perfect model."""
    per_class = test.get("per_class") or {}
    return ", ".join(c for c, v in per_class.items() if isinstance(v, dict) and v.get("support") == 0)


def collect(runs_dir: str) -> pd.DataFrame:
    """One row per run; files that are not a classifier's metrics are reported and skipped."""
    if not os.path.isdir(runs_dir):
        raise ToolkitError(f"{runs_dir}: folder not found; pass the --model_save_path folder(s) of your training runs")
    rows = []
    for path in find_runs(runs_dir):
        try:
            saved = read_json(path)
            card = RunCard.from_dict(saved, path)
            history = saved.get("history") or []
            if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
                raise ToolkitError(f"history is {type(history).__name__}, not a list of epochs")
            rows.append(table_row(path, card, history, runs_dir))
        except (ToolkitError, KeyError, TypeError, AttributeError) as e:
            why = str(e) if isinstance(e, ToolkitError) else "no test scores"
            print(f"warning: {path}: not the metrics of a finished classifier run ({why}); skipped")
    if not rows:
        raise ToolkitError(f"{runs_dir}: no finished training run found (no *_metrics.json with test scores); "
                           f"train with train_cnn.py --model_save_path inside this folder first")
    table = pd.DataFrame(rows, columns=COLUMNS)
    # The paper's order: category, then model as the registry lists them, then pre-training (none first).
    order = {c: i for i, c in enumerate(CATEGORIES + MODEL_NAMES + ["none"])}
    return table.sort_values(["category", "model", "pre-training", "run"],
                             key=lambda s: s.map(lambda v: (order.get(v, len(order)), str(v)))).reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    def cell(column: str, v) -> str:
        if pd.isna(v):
            return ""
        if column == "seconds":
            return f"{v:.1f}"
        if column in ("epochs", "best epoch"):
            return str(int(v))
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "|".join(" --- " for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(cell(c, v) for c, v in row.items()) + " |" for row in table.to_dict("records")]
    return "\n".join(lines)


def f1_by_category(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{category: {bar label: test F1}}; a label is the model on its features (+ its pre-training): an mlp on ssl
    vectors and one on eGeMAPS are two legend entries; two alike in one category are told apart by the run name."""
    values: dict[str, dict[str, float]] = {}
    for row in table.to_dict("records"):
        label = f"{row['model']} on {row['features']}" + ("" if row["pre-training"] == "none" else f" + {row['pre-training']}")
        bars = values.setdefault(row["category"], {})
        bars[label if label not in bars else f"{label} ({row['run']})"] = row["weighted F1"]
    return values


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    out = args.out or os.path.join(args.runs_dir, "runs_summary.csv")
    plot = args.plot or os.path.join(args.runs_dir, "runs_f1.png")
    if os.path.isdir(args.runs_dir):  # an unusable output folder fails now, not after reading every run
        for path, flag in ((out, "--out"), (plot, "--plot")):
            output_dir(os.path.dirname(os.path.abspath(path)), flag)
    table = collect(args.runs_dir)
    print(to_markdown(table))
    for row in table[table["untested classes"] != ""].to_dict("records"):
        print(f"warning: {row['run']}: weighted F1 {row['weighted F1']:.3f} says nothing about {row['untested classes']}: "
              f"no test clip of it (add speakers of it, or use --folds)")
    write_csv(table.round(4), out)
    plot_grouped_bars(f1_by_category(table), plot, "test weighted F1", f"{len(table)} run(s) in {args.runs_dir}")
    print(f"\n{len(table)} run(s); wrote {out} and {plot}")


if __name__ == "__main__":
    run_main(main)
