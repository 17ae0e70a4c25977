"""Stage 3: train a CNN (cnn3, cnn9, resnet18, resnet34, vgg16, efficientnet) on the spectrogram images.

The best epoch by validation weighted F1 (or loss, --select_by) is saved as {model_save_path}/{model}_{category}.pt
(a plain state dict) with a JSON sidecar, and scored on the test set. --recipe seed reproduces the seed project's
training; the default recipe keeps the time scale and adds augmentation, a schedule and early stopping.

--folds K instead pools the train/val/test CSVs and runs speaker-grouped K-fold cross-validation: K models,
mean ± std of accuracy / weighted F1 / UAR, per-speaker accuracy and the worst speaker ({model}_{category}_cv.json).
"""
from __future__ import annotations

import sys

from models import MODEL_NAMES, build_model, canonical_name
from toolkit.cli import get_args_parser, in_folder, pick_device, recipe_of, run_main, seed_everything, split_csv
from toolkit.data import input_meta, input_options, load_images
from toolkit.engine import RunFiles, fit
from toolkit.fileio import output_dir
from toolkit.labels import CLASSES, check_category

SPLITS = ("train", "val", "test")


def main(argv: list[str] | None = None) -> None:
    p = get_args_parser(__doc__, epochs=30)
    p.add_argument("--model", default="cnn3", help=f"network: {', '.join(MODEL_NAMES)} (or efficientnet_b2)")
    p.add_argument("--model_save_path", "--model_save_and_load_path", "--model_load_and_save_path", dest="model_save_path",
                   default="Models/", help="folder for the state dict, JSON, metrics and plots (the other two names: "
                   "the seed README's stage-4c example, which calls train_cnn.py; cnn_classifier.py is that stage)")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="train torchvision models from scratch instead of from ImageNet weights")
    p.add_argument("--weights", default=None, help="ImageNet weights file for a torchvision model (offline use)")
    p.add_argument("--folds", type=int, default=0,
                   help="K >= 2: speaker-grouped K-fold cross-validation over all three CSVs instead of one run")
    p.add_argument("--extra_test_csv", nargs="+", default=[],
                   help="also score the best model (every fold's, with --folds) on these CSVs, e.g. unseen kinds of voices")
    args = p.parse_args(argv)
    if args.folds == 1 or args.folds < 0:
        p.error(f"--folds {args.folds}: use 0 (one train/val/test run) or at least 2 folds")
    if any(a.startswith(("--model_save_and_load_path", "--model_load_and_save_path")) for a in (argv or sys.argv[1:])):
        print("note: this trains a new network; for the classifier initialised from the autoencoder's encoder "
              "(the seed README's stage 4c) run cnn_classifier.py with the same flags")
    category = check_category(args.category)
    name = canonical_name(args.model)
    classes = CLASSES[category]
    device = pick_device(args.device, args.threads)
    output_dir(args.model_save_path, "--model_save_path")  # an unusable folder fails now, not after training
    pretrained = bool(args.pretrained and name not in ("cnn3", "cnn9"))

    def make_model():
        return build_model(name, len(classes), pretrained=pretrained, weights=args.weights)

    inputs = input_meta(args.time_axis, args.frames)

    def load(csv, desc):
        return load_images(csv, category, desc=desc, **input_options(inputs))

    meta = {"model": name, "category": category, "classes": classes, **inputs, "pretrained": pretrained,
            "recipe": recipe_of(args), "train_csv": split_csv(args, "train"), "args": vars(args)}
    run = RunFiles(args.model_save_path, f"{name}_{category}")
    if args.folds:
        from toolkit.crossval import cross_validate

        data = load([split_csv(args, s) for s in SPLITS], "all splits")
        extra = {csv: load(in_folder(csv, args.csv_load_path), csv) for csv in args.extra_test_csv}
        cross_validate(data, classes, category, args, make_model, run, {**meta, "spectrogram": data.spectrogram},
                       device, extra)
        return
    seed_everything(args.seed)
    model = make_model()
    train, val, test = (load(split_csv(args, s), s) for s in SPLITS)
    fit(model, train, val, test, classes, args, run, {**meta, "spectrogram": train.spectrogram}, device)
    if args.extra_test_csv:
        from toolkit.crossval import score_extra_tests

        score_extra_tests(model, {csv: load(in_folder(csv, args.csv_load_path), csv) for csv in args.extra_test_csv},
                          classes, args.batch_size, device, run.path("_extra_tests.json"))


if __name__ == "__main__":
    run_main(main)
