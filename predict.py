"""Classify your own recordings with one or more trained models (the .pt files the training stages save).

Example:
    python3 predict.py --model_dir Models/ --model_file cnn3_sex.pt --model_file cnn3_emotion.pt \\
        my_recordings/ hello.wav --out predictions.csv --plot plots/

Each model is rebuilt from the run card saved beside its .pt (architecture, classes, feature type and parameters,
input handling) and each file goes through exactly the steps its training clips went through: loaded as mono at
the model's sample rate (any rate, stereo is downmixed), the model's features (a log-mel image, eGeMAPS, ...), and
its network input. One line per file is printed with each model's predicted class and class probabilities; --out
writes the same as CSV (one row per file, columns per category). A file that cannot be read is reported, the others
are still classified, and the exit status is 2 at the end. A file name that starts with '-' goes after '--'.
"""
from __future__ import annotations

import toolkit  # noqa: F401  (first: a Ctrl-C during the slow imports below then ends in one line)
import os
from collections import Counter

import pandas as pd
from tqdm import tqdm

from toolkit.cli import Parser, add_device_flags, in_folder, pick_device, run_main
from toolkit.errors import ToolkitError
from toolkit.features.mel import Mel, MelParams
from toolkit.fileio import output_dir, read_csv, write_csv
from toolkit.inference import Extraction, class_probabilities, expand_audio_paths, load_trained_model, model_inputs
from toolkit.plots import plot_spectrogram


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, MP3, ...; any sample rate, mono or stereo) "
                                            "or folders: a folder means every audio file directly inside it")
    p.add_argument("--model_dir", default="Models/", help="folder holding the model files")
    p.add_argument("--model_file", action="append", required=True, metavar="PT",
                   help="a trained model, e.g. cnn3_sex.pt, with its run card (.json) beside it; looked up in "
                        "--model_dir unless it is a path. Repeat the flag to run several models (e.g. sex and emotion)")
    p.add_argument("--out", default=None, metavar="CSV",
                   help="write the predictions here: one row per file; per model the predicted class and p_{class} "
                        "columns, named after the category (after the model file when two models share a category)")
    p.add_argument("--plot", default=None, metavar="DIR",
                   help="save each file's spectrogram, titled with the predictions, as DIR/{file name}.png")
    p.add_argument("--speakers", default=None, metavar="folder|CSV",
                   help="whose voice each file is, for models trained with --normalize speaker: 'folder' (each file's "
                        "folder is one speaker) or a CSV with columns file and speaker")
    add_device_flags(p)
    return p


def column_prefixes(model_paths: list[str], categories: list[str]) -> list[str]:
    """Each model's column name: its category, or its file name when two models classify the same category."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in model_paths]
    return [c if categories.count(c) == 1 else stem for c, stem in zip(categories, stems)]


def unique_png_names(files: list[str]) -> dict[str, str]:
    """A PNG name per file: its stem, or parent-folder_stem where files from two folders share a name."""
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    counts = Counter(stems)
    names, taken = {}, set()
    for f, stem in zip(files, stems):
        name = stem if counts[stem] == 1 else f"{os.path.basename(os.path.dirname(os.path.abspath(f)))}_{stem}"
        base, k = name, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        names[f] = name + ".png"
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


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    for path, flag in ((args.out and os.path.dirname(os.path.abspath(args.out)), "--out"), (args.plot, "--plot")):
        if path:  # an unusable output folder fails now, not after every file was classified
            output_dir(path, flag)
    device = pick_device(args.device, args.threads)
    model_paths = [in_folder(f, args.model_dir) for f in args.model_file]
    models, cards = zip(*(load_trained_model(p, device) for p in model_paths))
    for path, card in zip(model_paths, cards):
        if not card.features.get("params"):
            print(f"warning: {path}'s run card has no feature parameters (its images had no params.json); "
                  f"using the defaults, which may not be how its training features were made")
    normalized = [p for p, c in zip(model_paths, cards) if c.normalize == "speaker"]
    if normalized and not args.speakers:
        raise ToolkitError(f"{normalized[0]}: trained with --normalize speaker; pass --speakers folder (one folder per "
                           f"speaker) or --speakers list.csv (columns file, speaker)")
    prefixes = column_prefixes(model_paths, [c.category for c in cards])
    found, errors = expand_audio_paths(args.audio)
    files = found + list(errors)
    speakers = speakers_of(found, args.speakers) if args.speakers else None

    # Each distinct feature extraction runs once per file, whatever number of models share it.
    extractions = list(dict.fromkeys(Extraction.from_card(c) for c in cards))
    plotted = next((e for e in extractions if e.feature is Mel), Extraction(Mel, MelParams(db_ref="fixed")))
    if args.plot:
        extractions = list(dict.fromkeys(extractions + [plotted]))
    for e in extractions:
        e.feature.warm_up(e.params)  # a setting that cannot work (e.g. empty mel bands) fails once, here
    features: dict[Extraction, dict[str, object]] = {e: {} for e in extractions}
    for path in tqdm(found, desc="features", unit="file", leave=False, disable=len(found) < 10):
        try:
            for e in extractions:
                features[e][path] = e(path)
        except Exception as exc:  # one bad file never stops the others (ClipError says what is wrong with it)
            errors[path] = str(exc) if isinstance(exc, ToolkitError) else f"{path}: {type(exc).__name__}: {exc}"
    good = [f for f in found if f not in errors]

    rows = {f: {"file": f, "error": errors.get(f, "")} for f in files}
    columns = ["file"] + [c for pre, card in zip(prefixes, cards) for c in [pre] + [f"{pre}_p_{k}" for k in card.classes]]
    if good:
        speaker_of = dict(zip(found, speakers)) if speakers else {}
        for model, card, pre in zip(models, cards, prefixes):
            e = Extraction.from_card(card)
            spk = [speaker_of[f] for f in good] if speakers else None
            probs = class_probabilities(model, model_inputs(card, [features[e][f] for f in good], spk), device)
            for f, p in zip(good, probs):
                rows[f][pre] = card.classes[p.argmax()]
                rows[f].update({f"{pre}_p_{c}": round(float(v), 6) for c, v in zip(card.classes, p)})

    plot_names = unique_png_names(files)
    for f in files:
        row = rows[f]
        if row["error"]:
            print(f"FAILED {row['error']}")
            continue
        print(f"{f}  " + "  ".join(f"{pre}: {row[pre]} (" + ", ".join(f"{c} {row[pre + '_p_' + c]:.3f}" for c in card.classes) + ")"
                                   for pre, card in zip(prefixes, cards)))
        if args.plot:
            title = f"{os.path.basename(f)}: " + ", ".join(f"{pre} {row[pre]} ({row[pre + '_p_' + row[pre]]:.2f})" for pre in prefixes)
            mel = plotted.params
            plot_spectrogram(features[plotted][f], os.path.join(args.plot, plot_names[f]), title, hop_seconds=mel.hop_length / mel.sr)

    if args.out:
        write_csv(pd.DataFrame([rows[f] for f in files], columns=columns + ["error"]), args.out)
    print(f"classified {len(good)} of {len(files)} file(s) with {len(models)} model(s)"
          + (f"; wrote {args.out}" if args.out else "") + (f"; spectrograms in {args.plot}" if args.plot else ""))
    if errors:
        raise ToolkitError(f"{len(errors)} of {len(files)} file(s) could not be classified (FAILED lines above, e.g. "
                           f"{next(iter(errors))}); fix or remove them")


if __name__ == "__main__":
    run_main(main)
