"""Classify your own recordings with one or more trained models (the .pt files the training stages save).

Example:
    python3 predict.py --model_dir Models/ --model_file cnn3_sex.pt --model_file cnn3_emotion.pt \\
        my_recordings/ hello.wav --out predictions.csv --plot plots/

Each model is rebuilt from the run card saved beside its .pt (architecture, classes, feature type and parameters,
input handling, calibration) and each file goes through exactly the steps its training clips went through: loaded as
mono at the model's sample rate (any rate, stereo is downmixed), the model's features (a log-mel image, eGeMAPS, ...)
and its network input. A recording longer than the model's window (4.1 s for the default mel models) is cut into
windows every half a window (--window_hop), each is classified, and the file gets the mean probability over its
windows, calibrated with the card's temperature; --per_window writes every window instead, with its start and end.

One line per file is printed; --out writes a CSV (columns as in training's test predictions: predicted, p_<class>;
with several models prefixed by their category) or JSON lines (--format jsonl). A model whose run card summarises its
training inputs also gives each file a `distance` from them and an `unlike_training` flag (distance above the 99th
percentile of its validation clips'): the answer for such a voice deserves caution. Files are decoded in --workers
processes and windows go through the network in batches. A file that cannot be read is reported, the others are
still classified, and the exit status is 2 at the end. A file name that starts with '-' goes after '--'.

Many files on many machines: under `torchrun --nnodes M --nproc_per_node G predict.py ... --out FILE` each rank
classifies its share of the files (split by sorted path; by speaker with --speakers; each rank on its own GPU) and
rank 0 writes the one --out a single process would. As separate jobs: `--shard i/N --out FILE` for i = 0..N-1 (each
leaves its part in FILE.shards/), then the same command with `--merge_shards N` instead of --shard.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import json
import os
from collections.abc import Iterable, Iterator

import pandas as pd

from toolkit.cli import Parser, add_device_flags, in_folder, pick_device, run_main
from toolkit.config import TrainConfig, number, positive_float, positive_int
from toolkit.errors import ToolkitError
from toolkit.evaluation.fusion import FUSED, check_fusable, fuse, parse_weights
from toolkit.evaluation.plots import plot_recording
from toolkit.fileio import atomic_path, output_dir, read_csv, write_csv
from toolkit.io.audio import MAX_SECONDS, parallel_map
from toolkit.io.shards import Shard, add_shard_flags, check_shard_flags, job_digest, leave_part, read_parts, remove_parts
from toolkit.serving.inference import (BACKENDS, View, analyse, classify, describe, expand_audio_paths,
                                       spectrogram_extraction, window_marks)
from toolkit.serving.onnx_backend import OnnxNetwork

FILES_PER_CHUNK = 256  # files decoded and classified at a time: memory stays bounded whatever the number of files


def in_groups(items: Iterable, size: int) -> Iterator[list]:
    group = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, MP3, ...; any sample rate, mono or stereo) "
                                            "or folders: a folder means every audio file directly inside it")
    p.add_argument("--model_dir", default="Models/", help="folder holding the model files")
    p.add_argument("--model_file", action="append", required=True, metavar="PT",
                   help="a trained model, e.g. cnn3_sex.pt, with its run card (.json) beside it; looked up in "
                        "--model_dir (a relative path too: ssl/mlp_sex.pt), else as a path. Repeat the flag to run several models (e.g. sex and emotion)")
    p.add_argument("--out", default=None, metavar="FILE", help="write the predictions here (one row per file, or per window)")
    p.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="--out as CSV or as one JSON object per line")
    p.add_argument("--per_window", action="store_true",
                   help="one row per window (file, start, end and its probabilities) instead of one per file")
    p.add_argument("--window_hop", type=positive_float, default=None, metavar="SECONDS",
                   help="seconds between windows of a long recording (default: half the model's window)")
    p.add_argument("--skip_quiet_windows", type=number(float, 0, 200, above=True), default=None, metavar="DB",
                   help="leave out windows more than DB dB quieter than the file's loudest (silence, breaths) "
                        "(default: classify every window)")
    p.add_argument("--recursive", action="store_true", help="a folder also means the audio files of its subfolders")
    p.add_argument("--plot", default=None, metavar="DIR",
                   help="save each file's spectrogram, its windows shaded by predicted class, as DIR/{file name}.png")
    p.add_argument("--speakers", default=None, metavar="folder|CSV",
                   help="whose voice each file is, for models trained with --normalize speaker: 'folder' (each file's "
                        "folder is one speaker) or a CSV with columns file and speaker")
    p.add_argument("--workers", type=number(int, 1, 1024), default=os.cpu_count() or 1, help="processes decoding the files")
    p.add_argument("--batch_size", type=positive_int, default=TrainConfig.batch_size, help="windows per network batch")
    p.add_argument("--max_seconds", type=positive_float, default=MAX_SECONDS,
                   help="a longer file is reported and left out (its header is read first: memory stays bounded)")
    p.add_argument("--fuse", action="store_true",
                   help="also the fusion of the models (one category): the weighted mean of their calibrated "
                        "probabilities, as columns fused_predicted, fused_p_<class> (evaluate.py --fuse scores it)")
    p.add_argument("--fuse_weights", default=None, metavar="W1,W2,...",
                   help="--fuse: one weight per --model_file, in order (default: equal; evaluate.py "
                        "--choose_weights_on VAL.csv chooses them on labelled clips)")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="'onnx': run export_onnx.py's folder with onnxruntime (--model_file names the folder, or the .pt "
                        "it was exported from); a mel model then needs no torch")
    add_device_flags(p)
    add_shard_flags(p)
    return p


def column_prefixes(model_paths: list[str], categories: list[str]) -> list[str]:
    """Each model's column prefix: none for one model (the columns of training's test predictions), else its
    category; its file name when two models classify the same category; its folder's name and file name when two
    such files share a name (mlp_emotion.pt trained on eGeMAPS and on LTAS, each in its own --model_save_path)."""
    if len(model_paths) == 1:
        return [""]
    names = [c if categories.count(c) == 1 else os.path.splitext(os.path.basename(p))[0]
             for c, p in zip(categories, model_paths)]
    names = [n if names.count(n) == 1 else f"{os.path.basename(os.path.dirname(os.path.abspath(p)))}_{n}"
             for n, p in zip(names, model_paths)]
    return [f"{n}_" if names.count(n) == 1 else f"{n}_{i + 1}_" for i, n in enumerate(names)]


def model_labels(prefixes: list[str], categories: list[str]) -> list[str]:
    """How the printed lines and plot titles name each model: its category, with its CSV column prefix where two
    models classify the same category ('sex [cnn3_sex]', 'sex [models2_frame_mlp_sex]'), so that a line, a title and
    a column name one model alike."""
    return [c if categories.count(c) == 1 else f"{c} [{p.removesuffix('_')}]" for c, p in zip(categories, prefixes)]


def labelled(label: str, card, probs) -> str:
    """describe()'s line with the model's label in place of its category."""
    return f"{label}: {describe(card, probs).split(': ', 1)[1]}"


def unique_png_names(files: list[str]) -> dict[str, str]:
    """A PNG name per file: its stem, or, where files share a stem, the file's path below the folder they share with
    the extension kept ('take1.wav.png', 'take1.flac.png'; 'alice_take1.png', 'bob_take1.png')."""
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    groups: dict[str, list[str]] = {}
    for f, stem in zip(files, stems):
        groups.setdefault(stem, []).append(os.path.abspath(f))
    names = {}
    for f, stem in zip(files, stems):
        group = groups[stem]
        if len(group) == 1:
            names[f] = stem + ".png"
            continue
        common = os.path.commonpath([os.path.dirname(g) for g in group])
        below = [os.path.relpath(g, common) for g in group]
        shorter = [os.path.splitext(b)[0] for b in below]  # the extension only where it tells two files apart
        shown = shorter if len(set(shorter)) == len(shorter) else below
        names[f] = shown[group.index(os.path.abspath(f))].replace(os.sep, "_") + ".png"
    return names


def speakers_of(files: list[str], how: str) -> list[str]:
    """Each file's speaker: its folder ('folder'), or the `speaker` column of a CSV with a `file` column."""
    if how == "folder":
        return [os.path.dirname(os.path.abspath(f)) for f in files]
    table = read_csv(how, ["file", "speaker"])
    by_file = {os.path.abspath(str(f)): str(s) for f, s in zip(table["file"], table["speaker"])}
    missing = [f for f in files if os.path.abspath(f) not in by_file]
    if missing:
        raise ToolkitError(f"{how}: no speaker for {len(missing)} file(s), e.g. {missing[0]}; add a row (file, speaker) for each")
    return [by_file[os.path.abspath(f)] for f in files]


def probability_columns(prefix: str, classes: list[str], probs) -> dict:
    return {f"{prefix}predicted": classes[int(probs.argmax())],
            **{f"{prefix}p_{c}": round(float(p), 6) for c, p in zip(classes, probs)}}


def domain_columns(prefix: str, distance: float | None, threshold: float | None) -> dict:
    """The out-of-domain score and flag (none for a run card without the training summary)."""
    if distance is None:
        return {}
    return {f"{prefix}distance": round(distance, 6), f"{prefix}unlike_training": distance > threshold}


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    if (args.shard or args.merge_shards) and not args.out:
        raise ToolkitError("--shard/--merge_shards: pass --out FILE (the shards' parts wait beside it, in FILE.shards/)")
    for path, flag in ((args.out and os.path.dirname(os.path.abspath(args.out)), "--out"), (args.plot, "--plot")):
        if path:  # an unusable output folder fails now, not after every file was classified
            output_dir(path, flag)
    check_shard_flags(args, False, "files")
    device = pick_device(args.device, args.threads) if args.backend == "torch" else "cpu"  # onnxruntime: CPU
    if "WORLD_SIZE" not in os.environ:  # not under torchrun (torch is not imported for the onnx backend)
        return run(args, device, args.shard or Shard())
    import torch

    from toolkit.training import distributed

    if not distributed.launched():
        return run(args, device, args.shard or Shard())
    check_shard_flags(args, True, "files")
    if not args.out:
        raise ToolkitError("torchrun: pass --out FILE (rank 0 writes every rank's predictions there)")
    with distributed.session(torch.device(device)) as rank_device:
        run(args, rank_device if args.backend == "torch" else device, Shard(distributed.rank(), distributed.world_size()),
            under_torchrun=True)


def run(args, device, shard: Shard, under_torchrun: bool = False) -> None:
    """Classify this process's share of the files and, in a one-process run or the merge, write --out."""
    model_paths = [in_folder(f, args.model_dir) for f in args.model_file]
    if args.backend == "onnx":  # torch is not imported: an exported model runs where only onnxruntime is installed
        models = [OnnxNetwork(p, args.threads) for p in model_paths]
        cards = [m.card for m in models]
    else:
        from models import load_trained_model

        models, cards = zip(*(load_trained_model(p, device) for p in model_paths))
    for path, card in zip(model_paths, cards):
        if not card.features.get("params"):
            print(f"warning: {path}'s run card has no feature parameters (its images had no params.json); "
                  f"using the defaults, which may not be how its training features were made")
    fused = None
    if args.fuse or args.fuse_weights:
        if args.per_window:
            raise ToolkitError("--fuse combines whole recordings' probabilities: drop --per_window")
        check_fusable(model_paths, cards)
        fused = parse_weights(args.fuse_weights, len(cards)) if args.fuse_weights else [1.0] * len(cards)
    normalized = [p for p, c in zip(model_paths, cards) if c.normalize == "speaker"]
    if normalized and not args.speakers:
        raise ToolkitError(f"{normalized[0]}: trained with --normalize speaker; pass --speakers folder (one folder per "
                           f"speaker) or --speakers list.csv (columns file, speaker)")
    prefixes = column_prefixes(model_paths, [c.category for c in cards])
    labels = model_labels(prefixes, [c.category for c in cards])
    views = [View.of(c, args.window_hop) for c in cards]
    plotted = None
    if args.plot:
        plotted = spectrogram_extraction(views)
    for feature in dict.fromkeys([v.feature for v in views] + ([plotted] if plotted else [])):
        feature.warm_up()  # a setting that cannot work (e.g. empty mel bands) fails once, here
    found, errors = expand_audio_paths(args.audio, args.recursive)
    speakers = dict(zip(found, speakers_of(found, args.speakers))) if args.speakers else None
    plot_names = unique_png_names(found)
    distinct = list(dict.fromkeys(views))
    count = args.merge_shards or shard.count
    # a speaker's files stay in one shard: speaker normalisation needs all of them together
    mine = [] if args.merge_shards else [found[i] for i in shard.take(found, speakers.get if normalized else None)]
    shared_errors = dict(errors)  # the folders' problems: every shard finds them

    rows: dict[str, list[dict]] = {}
    chunk = len(mine) if normalized else FILES_PER_CHUNK  # a speaker's statistics need all of the speaker's files
    jobs = [(f, distinct, args.max_seconds, plotted) for f in mine]
    workers = min(args.workers, len(jobs)) if len(jobs) >= 2 * args.workers else 1  # a pool costs ~1 s to start
    decoded = parallel_map(analyse, jobs, workers, desc="decoding", unit="file", bar=len(found) >= 10)
    for recordings in in_groups(decoded, max(chunk, 1)):  # one pool for the run; the network takes a group at a time
        for r in recordings:
            if r.error:
                errors[r.path] = r.error
        good = [r for r in recordings if not r.error]
        results = [classify(model, card, view, good, device, args.batch_size,
                            [speakers[r.path] for r in good] if speakers else None, args.skip_quiet_windows)
                   if good else [] for model, card, view in zip(models, cards, views)]
        for i, r in enumerate(good):
            per_model = [result[i] for result in results]
            rows[r.path] = file_rows(r, per_model, cards, prefixes, args.per_window)
            if fused:
                probs = fuse([p for p, _ in per_model], fused)
                rows[r.path][0].update(probability_columns(f"{FUSED}_", cards[0].classes, probs))
                per_model = per_model + [(probs, per_model[0][1])]
            print(f"{r.path}  " + "  ".join(labelled(label, card, probs) for label, card, (probs, _) in zip(labels, cards, per_model))
                  + (f"  {labelled(FUSED, cards[0], per_model[-1][0])}" if fused else "")
                  + (f"  [{len(per_model[0][1])} windows]" if len(per_model[0][1]) > 1 else "")
                  + "".join(f"  [{label}: unlike the training voices, distance {p.distance:.1f} > {p.threshold:.1f}]"
                            for label, p in zip(labels, per_model) if p.unlike_training))
            if args.plot:
                first_card = cards[0]
                marks = window_marks(first_card.classes, per_model[0][1])
                shown = list(zip(labels, cards, per_model))  # the members (zip leaves out the fused entry)
                if fused:  # the answer first
                    shown.insert(0, (FUSED, cards[0], per_model[-1]))
                title = f"{os.path.basename(r.path)}: " + ", ".join(
                    f"{label} {card.classes[int(probs.argmax())]} ({probs.max():.2f})" for label, card, (probs, _) in shown)
                title += f"; windows shaded by {labels[0]}" if len(cards) > 1 else ""
                plot_recording(r.image, plotted.params, os.path.join(args.plot, plot_names[r.path]), title, marks,
                               first_card.classes)
    if count > 1:
        job = job_digest(found, model_paths, args.per_window, args.window_hop, args.skip_quiet_windows, args.fuse,
                         args.fuse_weights, args.speakers, args.max_seconds)
        part_folder = os.path.join(f"{args.out}.shards", job)
        if not args.merge_shards:
            if not under_torchrun:  # a job of its own: its problems are reported here too
                for error in errors.values():
                    print(f"FAILED {error}")
                print(f"shard {shard}: classified {len(rows)} of {len(mine)} file(s)")
            own_errors = {p: e for p, e in errors.items() if p not in shared_errors}
            if not leave_part(part_folder, shard, job, {"rows": rows, "errors": own_errors}, under_torchrun):
                return
        for part in read_parts(part_folder, count, job, "predict.py --shard"):
            rows.update(part["rows"])
            errors.update(part["errors"])
    for error in errors.values():
        print(f"FAILED {error}")
    in_order = found + [p for p in errors if p not in found]  # the files as given, folders' problems last
    if args.out:
        table = [row for f in in_order for row in rows.get(f) or [{"file": f, "error": errors[f]}]]
        write_predictions(table, args.out, args.format, prefixes + ([f"{FUSED}_"] if fused else []),
                          list(cards) + ([cards[0]] if fused else []), args.per_window)
    if count > 1:
        remove_parts(part_folder)  # merged into --out
    total = len(in_order)
    print(f"classified {total - len(errors)} of {total} file(s) with {len(models)} model(s)"
          + (f"; wrote {args.out}" if args.out else "") + (f"; spectrograms in {args.plot}" if args.plot else ""))
    if errors:
        raise ToolkitError(f"{len(errors)} of {total} file(s) could not be classified (FAILED lines above, e.g. "
                           f"{next(iter(errors))}); fix or remove them")


def file_rows(recording, per_model: list, cards, prefixes: list[str], per_window: bool) -> list[dict]:
    """The output rows of one file: one (whole-recording probabilities), or one per window of the first model's view."""
    if not per_window:
        row = {"file": recording.path, "seconds": round(recording.seconds, 3), "windows": len(per_model[0][1]), "error": ""}
        for card, prefix, prediction in zip(cards, prefixes, per_model):
            row.update(probability_columns(prefix, card.classes, prediction[0]))
            row.update(domain_columns(prefix, prediction.distance, prediction.threshold))
        return [row]
    rows = []
    for w, (start, end, _) in enumerate(per_model[0][1]):
        row = {"file": recording.path, "start": round(start, 3), "end": round(end, 3), "error": ""}
        for card, prefix, prediction in zip(cards, prefixes, per_model):
            windows = prediction[1]
            probs = windows[w][2] if w < len(windows) else None
            if probs is None:
                row[f"{prefix}predicted"] = "(skipped: quiet)"
            else:
                row.update(probability_columns(prefix, card.classes, probs))
                row.update(domain_columns(prefix, (prediction.window_distances or [None] * len(windows))[w],
                                          prediction.threshold))
        rows.append(row)
    return rows


def write_predictions(rows: list[dict], path: str, form: str, prefixes: list[str], cards, per_window: bool) -> None:
    if form == "jsonl":
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        return
    first = ["file", "start", "end"] if per_window else ["file", "seconds", "windows"]
    columns = first + [c for prefix, card in zip(prefixes, cards)
                       for c in [f"{prefix}predicted"] + [f"{prefix}p_{k}" for k in card.classes]
                       + ([f"{prefix}distance", f"{prefix}unlike_training"] if card.domain and prefix != f"{FUSED}_" else [])]
    columns += ["error"]
    table = pd.DataFrame(rows, columns=columns)
    if "windows" in table:  # a count, also where a failed file's row has none (else pandas writes 3.0)
        table["windows"] = table["windows"].astype("Int64")
    write_csv(table, path)


if __name__ == "__main__":
    run_main(main)
