"""Stage 5: fine-tune a trained CNN with pseudo-labels on unlabeled clips (Lee 2013, the seed's schedule).

Starts from the stage-3 model --cnn_param_file (with its JSON, in --model_dir). Each epoch walks the
unlabeled clips in batches: the model labels a batch in eval mode, then trains on it with weight alpha(step); after
every 25th unlabeled batch (the first included) comes one full pass over the labeled training set, and `step`
advances once per labeled pass. alpha is 0 before --T1, rises linearly to --af at --T2 and stays there. T1 and T2
are steps (the seed's --T1 100 --T2 700), epochs (3ep) or shares of the run (50%): the default, 0% to 50%, ramps alpha
up over the first half of the run whatever the size of the data (the seed's 100/700 steps left alpha at 0.0008
after a demo epoch, and took CREMA-D ~200 epochs to reach af).
The best epoch by validation weighted F1 (the loss breaking ties) is saved as --pseudolabeling_param_file (+ JSON,
metrics, plots) and scored on the test set; the starting model takes part as epoch 0, so a run in which no epoch
scores as high on validation keeps the starting model's weights, and says so. The starting model's and the
pseudo-labeled model's test metrics are printed side by side and saved as {pseudolabeling stem}_comparison.json.

The unlabeled CSV lists Audio_file_path (spectrograms made on the fly with the labeled images' parameters) or
Image_file_path. `make_demo_data.py --unlabeled_actors N` writes one for the demo corpus.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import os
from dataclasses import replace

from models import MODEL_NAMES, canonical_name, load_trained_model
from toolkit.cli import Parser, add_model_dir_flag, answer_help, get_args_parser, in_folder, run_main, seed_everything, split_csv
from toolkit.config import RECIPES, add_recipe_flags, non_negative, positive_int, share
from toolkit.errors import ToolkitError
from toolkit.fileio import write_json
from toolkit.io.splits import split_of_run
from toolkit.runcard import card_path
from toolkit.training.data import load_split, move_to_device
from toolkit.training.pseudo_schedule import schedule_point

# The seed's loop, not stage 3's recipe: constant learning rate, no augmentation, best epoch by validation F1; the
# loss breaks F1 ties, which a small validation split has many of (the starting model is epoch 0 of that choice).
RECIPE = replace(RECIPES["seed"], select_by="f1_loss")


def make_parser() -> Parser:
    p = get_args_parser(__doc__, epochs=150, recipe=False)
    add_recipe_flags(p, names=("weight_decay", "patience", "select_by"), base=RECIPE)
    p.add_argument("--unlabeled_csv", default="unlabeled.csv",
                   help="CSV of unlabeled clips (Audio_file_path, or the model's feature column such as "
                        "Image_file_path), in --data_dir unless a path")
    p.add_argument("--model", default="cnn3", help=f"network of --cnn_param_file: {', '.join(MODEL_NAMES)}")
    add_model_dir_flag(p, "folder holding --cnn_param_file; the pseudo-labeled model is saved there",
                       aliases=("model_save_and_load_path", "model_load_and_save_path"))
    p.add_argument("--cnn_param_file", default=None, help="the stage-3 model to start from (default {model}_{category}.pt)")
    p.add_argument("--pseudolabeling_param_file", default=None,
                   help="file name of the pseudo-labeled model (default {model}_{category}_PL.pt)")
    p.add_argument("--T1", type=schedule_point, default=schedule_point("0%"),
                   help="where the pseudo-label weight starts rising from 0: a step (100), an epoch (3ep) or a share of "
                        "the run (10%%)")
    p.add_argument("--T2", type=schedule_point, default=schedule_point("50%"),
                   help="where it reaches --af, in the same units (the seed's: 700)")
    p.add_argument("--af", type=non_negative(float, 100), default=0.5, help="final weight of the pseudo-label loss")
    p.add_argument("--start_step", type=non_negative(int), default=None,
                   help="step at the first epoch (default --T1, as the seed: the stage-3 model is the warm-up)")
    p.add_argument("--confidence_threshold", type=share, default=0.0,
                   help="ignore pseudo-labels whose softmax confidence is below this (0: use all, as the seed)")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                   help="processes making features when --unlabeled_csv lists audio")
    return p


if __name__ == "__main__":
    answer_help(make_parser)  # --help answers before the slow imports below

from toolkit.training.engine import describe_score, evaluate, predict_logits, public, selection_score
from toolkit.training.pseudo import (StartingModelIsEpochZero, compare, format_comparison, label_counts,
                                     labeled_passes_per_epoch, load_unlabeled, make_train_step, warn_about_overlap)
from toolkit.training.setup import set_up


def main(argv: list[str] | None = None) -> None:
    stage = set_up(make_parser(), argv, "pseudo_labeling_semisupervised.py", base=RECIPE)
    args, category, device = stage.args, stage.category, stage.device
    name = canonical_name(args.model)
    folder = stage.model_dir
    start_path = in_folder(args.cnn_param_file or f"{name}_{category}.pt", folder)
    pl_path = in_folder(args.pseudolabeling_param_file or f"{name}_{category}_PL.pt", folder)
    if os.path.abspath(pl_path) == os.path.abspath(start_path):
        raise ToolkitError(f"{pl_path}: would overwrite the starting model; pass another --pseudolabeling_param_file")
    seed_everything(args.seed)

    model, start = load_trained_model(start_path, device)
    for key, wanted in (("model", name), ("category", category)):
        if getattr(start, key) != wanted:
            raise ToolkitError(f"{start_path}: a {start.model} model for {start.category} {start.classes} (see "
                               f"{card_path(start_path)}), not {name} for {category}; pass the matching --model/--category "
                               f"or another --cnn_param_file")
    classes = start.classes
    # Inputs made exactly as the starting model saw them (features, input options, normalisation), whatever stage 3's recipe was.
    config = stage.config = replace(stage.config, normalize=start.normalize,
                                    eval_windows=start.training.get("eval_windows", "center"),
                                    **{k: v for k, v in start.input_options.items()
                                       if k in ("time_axis", "frames", "max_seconds") and v is not None})
    csvs = stage.csvs()
    # A fine-tuned encoder's waveforms are not stored by stage 2: they come from the CSVs' audio, as in its training.
    from_audio = None if start.feature.stored else start.feature
    train, val, test = (load_split(csvs[s], category, options=start.input_options, normalize=start.normalize, desc=s,
                                   classes=classes, from_audio=from_audio,
                                   features=None if from_audio else start.feature.name) for s in csvs)
    if train.feature.name != start.feature.name or (start.features["params"] and train.params and start.features["params"] != train.params):
        raise ToolkitError(f"{start_path}: trained on {start.features['type']} features made with {start.features['params']}, "
                           f"but {csvs['train']} lists {train.feature.name} features made with {train.params}; use matching data")
    for split in (train, val, test):
        split.stats = start.features["stats"]
    unlabeled_csv = split_csv(args, "unlabeled")
    unlabeled = move_to_device(load_unlabeled(unlabeled_csv, start, args.workers), device)
    unlabeled.stats = start.features["stats"]
    warn_about_overlap(unlabeled, {"validation": val, "test": test})

    # The starting point, measured the same way as the result will be.
    windows = config.eval_windows == "all"
    before_val, before_test = (evaluate(model, split, args.batch_size, device, len(classes), windows, start.temperature)
                               for split in (val, test))
    counts = label_counts(predict_logits(model, unlabeled, args.batch_size, device).argmax(1).numpy(), classes)
    print(f"{len(unlabeled)} unlabeled clips; the starting model labels them "
          + ", ".join(f"{c} {n} ({n / len(unlabeled):.0%})" for c, n in counts.items()))

    total = args.epochs * labeled_passes_per_epoch(len(unlabeled), args.batch_size)
    T1, T2 = (point.steps(total, total // args.epochs) for point in (args.T1, args.T2))
    if T2 < T1:  # (equal: a run too short for the ramp, e.g. --epochs 1 on a few clips: the weight is --af from T1)
        raise ToolkitError(f"--T1 {args.T1} and --T2 {args.T2} are steps {T1} and {T2} of this run's {total}: T2 must not "
                           f"come earlier; pass other values")
    start_step = T1 if args.start_step is None else args.start_step
    print(f"pseudo-label weight: 0 until step {T1}, rising to {args.af} at step {T2} (the run has {total} steps)" if T2 > T1
          else f"pseudo-label weight: {args.af} from step {T1} (the run has {total} step(s): too few for a ramp)")
    train_step = make_train_step(train, unlabeled, args.batch_size, device, args.seed, T1, T2, args.af,
                                 start_step, args.confidence_threshold)
    run = stage.run_files(os.path.splitext(os.path.basename(pl_path))[0], folder=os.path.dirname(pl_path) or ".")
    settings = {"T1": T1, "T2": T2, "T1_given": str(args.T1), "T2_given": str(args.T2), "af": args.af, "start_step": start_step,
                "confidence_threshold": args.confidence_threshold}
    card = stage.card(name, classes, train, split_of_run(csvs, category), init=[*start.init, "pseudo-label"],
                      init_detail={**start.init_detail, "started_from": os.path.abspath(start_path)},
                      model_args=start.model_args)
    card.features = dict(start.features)  # the starting model's parameters and input standardisation
    card.training["pseudo_labeling"] = {**settings, "unlabeled_csv": unlabeled_csv, "unlabeled_clips": len(unlabeled)}
    # The starting model is epoch 0 of the choice of the best epoch, scored as the engine scores one (uncalibrated).
    start_score = selection_score(evaluate(model, val, config.batch_size, device, len(classes), windows), config.select_by)
    card = stage.fit(model, train, val, test, run, card, train_step=train_step,
                     callbacks=[StartingModelIsEpochZero(start_score)])

    results = card.metrics
    kept_start = results["epoch"] == 0
    comparison = {
        "starting_model": os.path.abspath(start_path), "pseudo_labeled_model": os.path.abspath(run.weights),
        "category": category, "classes": classes, "best_epoch": results["epoch"], "kept_starting_model": kept_start,
        "test_clips": len(test),
        "unlabeled_csv": unlabeled_csv, "unlabeled_clips": len(unlabeled), "starting_pseudo_labels": counts,
        "pseudo_labeling": settings,
        "test": compare(public(before_test), results["test"]), "val": compare(public(before_val), results["val"]),
        "test_confusion_matrix": {"before": before_test["confusion_matrix"], "after": results["test"]["confusion_matrix"]},
    }
    write_json(comparison, run.path("_comparison.json"))
    print(f"\nbefore = {start_path}, after = {run.weights}")
    print(format_comparison(comparison["test"], f"test ({len(test)})"))
    print(f"saved {run.path('_comparison.json')}")
    if kept_start:
        print(f"pseudo-labeling did not improve on the starting model: no pseudo-labeled epoch scored as high on "
              f"validation ({describe_score(start_score, config.select_by)}), so {run.weights} keeps the starting "
              f"model's weights (test scores as before; the calibration is fitted again)")


if __name__ == "__main__":
    run_main(main)
