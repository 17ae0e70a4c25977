"""Stage 3: train a network (cnn3, cnn9, resnet18, resnet34, vgg16, efficientnet, frame_mlp; linear, mlp) on stage 2's
features.

The best epoch by validation weighted F1 (or loss, --select_by) is saved as {model_dir}/{model}_{category}.pt
(a plain state dict) with its run card ({model}_{category}.json), and scored on the test set. --recipe seed
reproduces the seed project's training; the default recipe keeps the time scale and adds augmentation, a schedule
and early stopping. The feature type (mel images or eGeMAPS vectors) is read off the split CSVs.

Launched by `torchrun --nproc_per_node=N train_cnn.py ...` it trains data-parallel (toolkit/training/distributed.py: one
share of each epoch per process, gradients averaged; rank 0 writes the files; the run card records world_size).

--folds K instead pools the train/val/test CSVs and runs speaker-grouped K-fold cross-validation: K models,
mean ± std of accuracy / weighted F1 / UAR, per-speaker accuracy and the worst speaker ({model}_{category}_cv.json).
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import os
import sys

from models import MODELS, add_model_flags, build_model, canonical_name, check_input, model_args_of, models_taking
from toolkit.cli import (Parser, add_features_flag, add_model_dir_flag, answer_help, fold_count, get_args_parser, in_folder,
                         run_main)
from toolkit.errors import ToolkitError

STAGE_4C_FLAGS = ("--model_save_and_load_path", "--model_load_and_save_path")  # the seed README's stage-4c line


def is_stage_4c(argv: list[str]) -> bool:
    """The seed README runs stage 4c as `train_cnn.py ... --model_save_and_load_path DIR`: that command is the
    autoencoder-initialised classifier (cnn_classifier.py), never a new cnn3 over stage 3's cnn3_{category}.pt."""
    return any(a.split("=")[0] in STAGE_4C_FLAGS for a in argv)


def run_stage_4c(argv: list[str]) -> None:
    import cnn_classifier

    rest, i = [], 0
    while i < len(argv):  # --model names stage 3's network; stage 4c's is always cnn3
        name, _, value = argv[i].partition("=")
        if name == "--model":
            value = value or (argv[i + 1] if i + 1 < len(argv) else "")
            if canonical_name(value) != "cnn3":
                raise ToolkitError(f"--model {value} with --model_save_and_load_path: that is stage 4c (cnn_classifier.py), "
                                   f"whose network is cnn3 from the autoencoder's encoder; drop --model_save_and_load_path "
                                   f"to train {value} (--model_dir DIR)")
            i += 1 if "=" in argv[i] else 2
            continue
        rest.append(argv[i])
        i += 1
    print("note: --model_save_and_load_path is the seed README's stage 4c: running cnn_classifier.py (cnn3 initialised "
          "from the autoencoder's encoder_3_layers.pt; saved as cnn3_ae_{category}.pt)")
    cnn_classifier.main(rest)


def make_parser() -> Parser:
    p = get_args_parser(__doc__, epochs=30)
    p.add_argument("--model", default="cnn3", help=f"network: {', '.join(models_taking('image'))} for images, "
                                                   f"{', '.join(models_taking('vector'))} for vector features "
                                                   f"(or efficientnet_b2); wav2vec2: train_wav2vec2.py")
    add_model_dir_flag(p, "folder for the state dict, run card, metrics and plots; --model_save_and_load_path instead "
                          "runs stage 4c, cnn_classifier.py, as the seed README's stage-4c line does")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="train the torchvision models from scratch (without it they start from ImageNet weights, which "
                        "must be in torchvision's cache or given with --weights)")
    p.add_argument("--weights", default=None, help="ImageNet weights file for a torchvision model (offline use)")
    p.add_argument("--folds", type=fold_count, default=0,
                   help="K >= 2: speaker-grouped K-fold cross-validation over all three CSVs instead of one run")
    p.add_argument("--extra_test_csv", nargs="+", default=[],
                   help="also score the best model (every fold's, with --folds) on these CSVs, e.g. unseen kinds of voices")
    add_features_flag(p)
    add_model_flags(p)
    return p


if __name__ == "__main__" and not is_stage_4c(sys.argv[1:]):  # (stage 4c answers with cnn_classifier.py's --help)
    answer_help(make_parser)  # --help answers before the slow imports below

from toolkit.training import distributed
from toolkit.training.fullbatch import check_config as check_full_batch
from toolkit.training.setup import Stage, set_up


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if is_stage_4c(argv):
        return run_stage_4c(argv)
    stage = set_up(make_parser(), argv, "train_cnn.py", default_recipe=lambda args: MODELS[canonical_name(args.model)].recipe)
    args = stage.args
    name = canonical_name(args.model)
    own = model_args_of(name, args)  # a hyperparameter of another model: one line now, before any data is read
    if args.folds and distributed.launched():
        raise ToolkitError("--folds under torchrun is not supported: run the folds in one process each")
    with distributed.session(stage.device) as stage.device:  # under torchrun: this rank's device, in the process group
        train_and_report(stage, name, own)


def train_and_report(stage: Stage, name: str, own: dict) -> None:
    """Train `name` with its own hyperparameters `own` (or cross-validate it) and score it."""
    args, config, category, device = stage.args, stage.config, stage.category, stage.device
    pretrained = bool(args.pretrained and MODELS[name].imagenet)
    train, val, test, split = stage.splits(args.folds)
    classes = train.classes
    train_csv = stage.csvs()["train"]
    check_input(name, train.feature.kind, train.input_shape(), train_csv)
    check_full_batch(config, train.feature.kind, train_csv)
    card = stage.card(name, classes, train, split, init=["imagenet" if pretrained else "scratch"],
                      init_detail={"weights": os.path.abspath(args.weights)} if args.weights else {}, model_args=own)
    run = stage.run_files(f"{name}_{category}")
    extra = {csv: stage.load(in_folder(csv, args.data_dir), csv, classes) for csv in args.extra_test_csv}

    def make_model():
        return build_model(name, len(classes), train.input_shape(), pretrained=pretrained, weights=args.weights,
                           model_args=own)

    if args.folds:
        from toolkit.training.crossval import cross_validate

        cross_validate(train, args.folds, config, make_model, run, card, device, extra)
        return
    model = stage.new_model(make_model)
    card = stage.fit(model, train, val, test, run, card)
    if extra and distributed.is_main():
        from toolkit.training.crossval import score_extra_tests

        score_extra_tests(model, extra, card, config.batch_size, device, run.path("_extra_tests.json"))


if __name__ == "__main__":
    run_main(main)
