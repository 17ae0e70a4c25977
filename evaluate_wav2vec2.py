"""The seed project's evaluation of a fine-tuned wav2vec2 (its Transformer/Testing/evaluate_wav2vec2.py), with its
flags: scores --model_load_path on {csv_load_path}/{test_csv} through evaluate.py (the windowed, calibrated path of
predict.py) and writes the metrics, confusion matrix, per-speaker and per-group reports into --model_dir_path.

Example (the seed's command line):
    python3 evaluate_wav2vec2.py --csv_load_path Data/ --category emotion --model_load_path Models/emotion.pt \\
        --model_dir_path Models/emotion_eval/

--model_load_path is the .pt train_wav2vec2.py (or training_wav2vec2.py) saved, or the folder holding it (the seed
passed the Trainer's checkpoint folder). --epochs and --learning_rate are accepted, as the seed's script did, and
unused: evaluation trains nothing.
"""
from __future__ import annotations

import toolkit  # noqa: F401  (first: a Ctrl-C during the slow imports below then ends in one line)
import os

from toolkit.cli import Parser, add_device_flags, answer_help, in_folder, run_main
from toolkit.config import FINETUNE, positive_float, positive_int
from toolkit.errors import ToolkitError
from toolkit.io.labels import check_category
from toolkit.runcard import read_card
from toolkit.serving.inference import find_trained_models


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--csv_load_path", "--data_dir", required=True, help="folder holding the test CSV")
    p.add_argument("--category", required=True, help="the label column, e.g. emotion, sex, age, race")
    p.add_argument("--model_load_path", required=True, help="the fine-tuned model's .pt, or the folder holding it")
    p.add_argument("--model_dir_path", "--out", required=True, help="folder for the metrics, predictions and plots")
    p.add_argument("--test_csv", default=None, help="the labelled CSV in --csv_load_path (default {category}_test.csv)")
    p.add_argument("--epochs", type=positive_int, default=FINETUNE.epochs, help="accepted for the seed's command line; unused")
    p.add_argument("--batch_size", type=positive_int, default=FINETUNE.batch_size, help="clips per network batch")
    p.add_argument("--learning_rate", type=positive_float, default=FINETUNE.learning_rate,
                   help="accepted for the seed's command line; unused")
    add_device_flags(p)
    return p


if __name__ == "__main__":
    answer_help(get_args_parser)  # --help answers before the slow imports below

import evaluate


def model_file(path: str, category: str) -> str:
    """The .pt given, or the one classifier of `category` in the folder given."""
    if not os.path.isdir(path):
        return path
    found = [p for p in find_trained_models(path)[0] if read_card(p).category == category]
    if len(found) != 1:
        what = f"{len(found)} models of {category}: {', '.join(map(os.path.basename, found))}" if found else f"no model of {category}"
        raise ToolkitError(f"{path}: {what}; pass the .pt itself as --model_load_path")
    return found[0]


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    category = check_category(args.category)
    data = in_folder(args.test_csv or f"{category}_test.csv", args.csv_load_path)
    evaluate.main([data, "--model_file", os.path.abspath(model_file(args.model_load_path, category)), "--label_column", category,
                   "--out", args.model_dir_path, "--batch_size", str(args.batch_size), "--device", args.device,
                   *(["--threads", str(args.threads)] if args.threads else [])])


if __name__ == "__main__":
    run_main(main)
