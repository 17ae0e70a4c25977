"""Score trained models on any labelled recordings: metrics, plots and a per-group (fairness) report.

Example:
    python3 evaluate.py --model_dir Models/demo/ --model_file cnn3_sex.pt Data/demo/sex_test.csv --out Models/demo/eval/
    python3 evaluate.py --model_file Models/mine/mlp_emotion.pt their_clips.csv --audio_column path \\
        --label_column mood --speaker_column who --out eval/
    python3 evaluate.py --model_file a/mlp_emotion.pt --model_file b/cnn3_emotion.pt --fuse Data/demo/emotion_test.csv --out eval/

DATA is a CSV or a folder. A CSV: a split CSV or stage 1's {category}_with_audio_path.csv (their Audio_file_path,
ActorID and label columns are used), or any manifest (--audio_column, --label_column, --speaker_column; relative
audio paths are taken from --audio_path, else from the CSV's folder). A folder: one folder per class
(DATA/<class>/..., a folder below it, if any, is the speaker), as stage 1's --from_folders reads.

Each recording goes through exactly what predict.py does with it (toolkit/serving/inference.py: the model's features from
the audio, windows of a long recording, the mean probability, the run card's calibration temperature), and its label
is mapped through the model's classes (a label the model does not know is a one-line error). For the split CSV a
model was tested on, the metrics equal those stage 3 wrote. Several models give one table (evaluation.csv); --fuse
also scores the weighted mean of their calibrated probabilities (toolkit/evaluation/fusion.py), as one more model.

Written to --out, per model (named after its .pt): _evaluation.json (accuracy, weighted F1/precision/recall, UAR, loss,
calibration error, confusion matrix, per class and per speaker), _predictions.csv, _confusion_matrix.png,
_reliability.png, _speakers.png, and the per-group report _groups.json/.csv/.png: for every demographic column of the
data (sex, age, race, ethnicity, or --group_column) each group's F1 and accuracy, the worst group and the largest gap,
with 95 % intervals from a bootstrap over speakers (toolkit/evaluation/fairness.py).
"""
from __future__ import annotations

import toolkit  # noqa: F401  (first: a Ctrl-C during the slow imports below then ends in one line)
import itertools
import os

import numpy as np
import pandas as pd

from predict import FILES_PER_CHUNK
from toolkit.cli import Parser, add_device_flags, answer_help, in_folder, pick_device, run_main
from toolkit.config import TrainConfig, positive_float, positive_int
from toolkit.errors import ToolkitError
from toolkit.evaluation.fairness import REPLICATES, describe, fairness_report, group_columns, write_fairness
from toolkit.evaluation.fusion import FUSED, check_fusable, choose_weights, fuse, parse_weights
from toolkit.evaluation.metrics import breakdown, format_confusion, format_metrics, reliability
from toolkit.evaluation.plots import plot_confusion_matrix, plot_reliability, plot_speaker_accuracy
from toolkit.fileio import output_dir, read_csv, write_csv, write_json
from toolkit.io.audio import MAX_SECONDS, parallel_map
from toolkit.io.corpus import folder_rows, manifest_rows
from toolkit.serving.inference import View, analyse, classify
from toolkit.training.data import AUDIO_COLUMN, SPEAKER_COLUMN

TABLE_METRICS = ("accuracy", "f1", "precision", "recall", "uar", "ece", "loss")


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("data", nargs="?", help="labelled recordings: a CSV (split, stage-1 or your own manifest) or a folder of "
                                           "class folders")
    p.add_argument("--model_dir", default="Models/", help="folder holding the model files")
    p.add_argument("--model_file", action="append", default=[], metavar="PT",
                   help="a trained model (.pt with its run card beside it); looked up in --model_dir unless it is a "
                        "path. Repeat it to score several models on the same recordings")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the metrics, predictions and plots")
    g = p.add_argument_group("the data's columns (defaults: those stage 1 writes)")
    g.add_argument("--audio_column", default=None,
                   help=f"the column of audio paths (default: {AUDIO_COLUMN} when the CSV has one, else 'file')")
    g.add_argument("--label_column", default=None, help="the column of true labels (default: each model's category)")
    g.add_argument("--speaker_column", default=None,
                   help=f"the column naming each clip's speaker (default: {SPEAKER_COLUMN} when present; without one "
                        f"each clip counts as its own speaker)")
    g.add_argument("--audio_path", default=None, help="the folder relative audio paths start from (default: the CSV's)")
    g.add_argument("--group_column", action="append", default=[], metavar="NAME",
                   help="also report per group of this column (the demographic columns sex, age, race, ethnicity are "
                        "found by themselves); repeat for several")
    g.add_argument("--bootstrap", type=positive_int, default=REPLICATES,
                   help="bootstrap replicates (over speakers) of the confidence intervals")
    f = p.add_argument_group("fusion (models of one category)")
    f.add_argument("--fuse", action="store_true", help="also score the weighted mean of the models' calibrated probabilities")
    f.add_argument("--fuse_weights", default=None, metavar="W1,W2,...",
                   help="one weight per --model_file (or --cv_run), in order (default: equal weights); with --cv_run "
                        "'validation' chooses them on each fold's validation speakers")
    f.add_argument("--cv_run", action="append", default=[], metavar="CV_JSON",
                   help="instead of DATA and --model_file: fuse cross-validation runs ({model}_{category}_cv.json of "
                        "train_cnn.py --folds, same --folds and --seed) fold by fold; writes fused_{category}_cv.json")
    f.add_argument("--choose_weights_on", default=None, metavar="CSV",
                   help="choose the weights on these labelled recordings (e.g. the validation split): the ones of a "
                        "0.1 grid with the lowest log loss")
    p.add_argument("--window_hop", type=positive_float, default=None, metavar="SECONDS",
                   help="seconds between windows of a long recording (default: half the model's window)")
    p.add_argument("--skip_quiet_windows", type=positive_float, default=None, metavar="DB",
                   help="leave out windows more than DB dB quieter than the file's loudest (as predict.py)")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="processes decoding the files")
    p.add_argument("--batch_size", type=positive_int, default=TrainConfig.batch_size, help="windows per network batch")
    p.add_argument("--max_seconds", type=positive_float, default=MAX_SECONDS, help="a longer file is reported and left out")
    add_device_flags(p)
    return p


if __name__ == "__main__":
    answer_help(get_args_parser)  # --help answers before the slow imports below

import torch

from models import load_trained_model
from toolkit.training.engine import public, score_probabilities


def labelled_clips(data: str, labels: list[str], args) -> tuple[pd.DataFrame, bool]:
    """(one row per clip: Audio_file_path (absolute), ActorID, the label columns and the data's other columns;
    whether the data names speakers: without, ActorID is the clip itself)."""
    if os.path.isdir(data):
        if len(labels) != 1:
            raise ToolkitError(f"{data}: a folder of class folders has one label; score models of one category at a time")
        table, reports = folder_rows(data, labels[0])
        speakers = bool((table["ActorID"] != table["Audio_file_name"]).any())
    else:
        raw = read_csv(data, [])
        audio = args.audio_column or (AUDIO_COLUMN if AUDIO_COLUMN in raw.columns else "file")
        speaker = args.speaker_column or (SPEAKER_COLUMN if SPEAKER_COLUMN in raw.columns else None)
        missing = [c for c in labels if c not in raw.columns]
        if missing:
            raise ToolkitError(f"{data}: no label column '{missing[0]}' (the models' category; its columns: "
                               f"{', '.join(map(str, raw.columns))}); pass --label_column NAME, or a model of a category it has")
        table, reports = manifest_rows(data, args.audio_path, audio, labels, speaker)
        if "Audio_file_name" in raw.columns and audio in raw.columns:  # stage 1's clip names, not the listed paths
            names = dict(zip(raw[audio].astype(str), raw["Audio_file_name"].astype(str)))
            table = table.assign(Audio_file_name=table["Audio_file_name"].map(names).fillna(table["Audio_file_name"]))
        speakers = speaker is not None
    for line in reports:
        print(f"warning: {line}")
    if table.empty:
        raise ToolkitError(f"{data}: no clip with an audio file; check the audio column and --audio_path")
    return table, speakers


def label_indices(table: pd.DataFrame, column: str, classes: list[str], model: str, source: str) -> np.ndarray:
    """Each row's class index in the model's classes (-1 for a blank label); a label it lacks is a one-line error."""
    values = table[column].where(table[column].notna(), "").astype(str).str.strip()
    unknown = sorted(set(values[values != ""]) - set(classes))
    if unknown:
        raise ToolkitError(f"{source}: label(s) {unknown[:5]} in column '{column}' are not classes of {model} "
                           f"({', '.join(classes)}); map them to its classes or drop those rows")
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(v, -1) for v in values])


def run_models(models, cards, files: list[str], speakers: list[str], args, device) -> tuple[list[np.ndarray], dict]:
    """Per model (N files, classes) calibrated probabilities, as predict.py computes them; and {file: error}."""
    views = [View.of(c, args.window_hop) for c in cards]
    for feature in dict.fromkeys(v.feature for v in views):
        feature.warm_up()
    distinct = list(dict.fromkeys(views))
    jobs = [(f, distinct, args.max_seconds, None) for f in files]
    workers = min(args.workers, len(jobs)) if len(jobs) >= 2 * args.workers else 1
    decoded = parallel_map(analyse, jobs, workers, desc="decoding", unit="file", bar=len(files) >= 10)
    # a few hundred files at a time (memory stays bounded), or all at once when a model needs each speaker's files
    chunk = len(files) if any(c.normalize == "speaker" for c in cards) else FILES_PER_CHUNK
    owner = dict(zip(files, speakers))
    probs, errors = [[] for _ in cards], {}
    while recordings := list(itertools.islice(decoded, chunk)):
        errors.update({r.path: r.error for r in recordings if r.error})
        good = [r for r in recordings if not r.error]
        for out, model, card, view in zip(probs, models, cards, views):
            if good:
                result = classify(model, card, view, good, device, args.batch_size, [owner[r.path] for r in good],
                                  args.skip_quiet_windows)
                out.append(np.stack([p for p, _ in result]))
    if len(errors) == len(files):
        raise ToolkitError(f"none of the {len(files)} recordings could be read, e.g. {next(iter(errors.values()))}")
    return [np.concatenate(p) for p in probs], errors


def score(probs: np.ndarray, y: np.ndarray, frame: pd.DataFrame, classes: list[str], temperature: float) -> dict:
    """Stage 3's test metrics of calibrated probabilities (metrics_of on their logarithm: softmax gives them back),
    per class and per speaker; `uncalibrated` the probabilities before the temperature, for the reliability plot."""
    m = score_probabilities(probs, y, len(classes))
    m["uncalibrated"] = torch.softmax(m["logits"] * temperature, 1).numpy()  # softmax(log(p) / T) undone
    return {**m, **breakdown(frame, y, m["probabilities"].argmax(1), classes)}


def write_outputs(name: str, title: str, m: dict, frame: pd.DataFrame, y: np.ndarray, classes: list[str],
                  temperature: float, groups: dict, out: str, extra: dict) -> None:
    prefix = os.path.join(out, name)
    write_json({**extra, "clips": len(y), "test": {**public({k: v for k, v in m.items() if k != "uncalibrated"}),
                                                   "groups": groups}}, prefix + "_evaluation.json")
    predictions = frame.copy()
    predictions["predicted"] = [classes[i] for i in m["probabilities"].argmax(1)]
    for i, c in enumerate(classes):
        predictions[f"p_{c}"] = m["probabilities"][:, i].round(6)
    write_csv(predictions, prefix + "_predictions.csv")
    plot_confusion_matrix(m["confusion_matrix"], classes, prefix + "_confusion_matrix.png", f"{title} · F1 {m['f1']:.3f}")
    curves = {"before calibration": reliability(m["uncalibrated"], y)}
    if temperature != 1.0:
        curves[f"temperature {temperature:.2f}"] = reliability(m["probabilities"], y)
    plot_reliability(curves, prefix + "_reliability.png", f"{title}: calibration")
    if "per_speaker" in m:
        plot_speaker_accuracy(m["per_speaker"], prefix + "_speakers.png", f"{title}: accuracy per speaker")
    write_fairness(groups, prefix, f"{title}: F1 per group")


def main(argv: list[str] | None = None) -> None:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.cv_run:
        if args.data or args.model_file:
            parser.error("--cv_run fuses cross-validation runs: give no DATA or --model_file with it")
        return fuse_cv_runs(args)
    if not args.data or not args.model_file:
        parser.error("give the labelled DATA and at least one --model_file (or --cv_run)")
    out = output_dir(args.out, "--out")
    device = pick_device(args.device, args.threads)
    paths = [in_folder(f, args.model_dir) for f in args.model_file]
    models, cards = zip(*(load_trained_model(p, device) for p in paths))
    names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(names)) != len(names):
        names = [f"{os.path.basename(os.path.dirname(os.path.abspath(p)))}_{n}" for p, n in zip(paths, names)]
    fusing = args.fuse or args.fuse_weights or args.choose_weights_on
    if fusing:
        check_fusable(paths, cards)
    weights = parse_weights(args.fuse_weights, len(paths)) if args.fuse_weights else None
    label_of = [args.label_column or c.category for c in cards]
    table, speakers = labelled_clips(args.data, list(dict.fromkeys(label_of)), args)
    for path, card in zip(paths, cards):
        if card.normalize == "speaker" and not speakers:
            raise ToolkitError(f"{path}: trained with --normalize speaker, which needs each clip's speaker; pass "
                               f"--speaker_column (the data's speaker column)")
    truth = [label_indices(table, column, c.classes, os.path.basename(p), args.data)
             for column, c, p in zip(label_of, cards, paths)]
    files = table["Audio_file_path"].tolist()
    probs, errors = run_models(models, cards, files, table["ActorID"].astype(str).tolist(), args, device)
    for error in list(errors.values())[:5]:
        print(f"warning: left out: {error}")
    if errors:
        print(f"warning: {len(errors)} of {len(files)} recording(s) could not be read and are left out")
    kept = ~table["Audio_file_path"].isin(errors).to_numpy()
    labelled = kept & np.all([y >= 0 for y in truth], 0)  # every model is scored on the same clips
    frame = table[labelled].reset_index(drop=True)
    at = np.flatnonzero(labelled[kept])
    columns = group_columns(frame, args.group_column, args.data)
    if not len(frame):
        raise ToolkitError(f"{args.data}: no recording with a label could be scored")

    rows, results = [], {}
    entries = [(n, str(p), c, pr[at], y[labelled], c.temperature) for n, p, c, pr, y in zip(names, paths, cards, probs, truth)]
    if fusing:
        if args.choose_weights_on:
            weights = weights_on(args.choose_weights_on, args, models, cards, label_of, paths, device)
        fused = fuse([e[3] for e in entries], weights)
        members = [e[0] for e in entries]
        entries.append((f"{FUSED}_{cards[0].category}", " + ".join(members), cards[0], fused, entries[0][4], 1.0))
    for i, (name, source, card, p, y, temperature) in enumerate(entries):
        is_fusion = i == len(paths)
        m = score(p, y, frame, card.classes, temperature)
        groups = fairness_report(frame, y, m["probabilities"].argmax(1), card.classes, columns, args.bootstrap)
        title = f"{FUSED} ({len(paths)} models) · {card.category}" if is_fusion else card.name
        extra = {"model": source, "data": os.path.abspath(args.data), "category": card.category, "classes": card.classes}
        if is_fusion:
            extra["fusion"] = {"members": [str(p) for p in paths], "weights": weights or [1.0 / len(paths)] * len(paths),
                               "weights_chosen_on": args.choose_weights_on}
        write_outputs(name, title, m, frame, y, card.classes, temperature, groups, out, extra)
        results[name] = {**extra, "test": public({k: v for k, v in m.items() if k != "uncalibrated"}), "groups": groups}
        row = {"model": name, "category": card.category, "clips": len(y), "speakers": frame["ActorID"].nunique(),
               **{k: m[k] for k in TABLE_METRICS}, "f1_low": groups["overall"]["f1_ci"][0],
               "f1_high": groups["overall"]["f1_ci"][1]}
        for column, c in groups["columns"].items():
            if "gap" in c:
                row[f"{column}_worst"] = c["worst"]["group"]
                row[f"{column}_gap"] = c["gap"]["value"]
        rows.append(row)
        print(f"{name} on {len(y)} clips: {format_metrics(m)} ece {m['ece']:.4f}")
        print(format_confusion(m["confusion_matrix"], card.classes))
        for line in describe(groups):
            print(f"  {line}")
    write_csv(pd.DataFrame(rows), os.path.join(out, "evaluation.csv"))
    write_json(results, os.path.join(out, "evaluation.json"))
    print(f"scored {len(entries)} model(s) on {len(frame)} recording(s) of {args.data}; wrote {os.path.join(out, 'evaluation.csv')} and "
          f"each model's metrics, predictions, plots and per-group report")


def fuse_cv_runs(args) -> None:
    from toolkit.training.crossval import fuse_cross_validations

    if len(args.cv_run) < 2:
        raise ToolkitError("--cv_run: give two or more cross-validation runs to fuse")
    weights = args.fuse_weights
    if weights and weights != "validation":
        weights = parse_weights(weights, len(args.cv_run))
    fuse_cross_validations(args.cv_run, weights, output_dir(args.out, "--out"))


def weights_on(csv: str, args, models, cards, label_of: list[str], paths: list[str], device) -> list[float]:
    """Fusion weights chosen on other labelled recordings (e.g. the validation split): toolkit/fusion.choose_weights."""
    table, _ = labelled_clips(csv, list(dict.fromkeys(label_of)), args)
    y = label_indices(table, label_of[0], cards[0].classes, os.path.basename(paths[0]), csv)
    probs, errors = run_models(models, cards, table["Audio_file_path"].tolist(), table["ActorID"].astype(str).tolist(),
                               args, device)
    keep = (~table["Audio_file_path"].isin(errors).to_numpy())
    chosen = choose_weights([p[(y[keep] >= 0)] for p in probs], y[keep][y[keep] >= 0])
    print(f"fusion weights chosen on {csv} ({int((y[keep] >= 0).sum())} clips): "
          + ", ".join(f"{os.path.basename(p)} {w:.2f}" for p, w in zip(paths, chosen)))
    return chosen


if __name__ == "__main__":
    run_main(main)
