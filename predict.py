"""Classify your own recordings with one or more trained models (the .pt files the training stages save).

Example:
    python3 predict.py --model_dir Models/ --model_file cnn3_sex.pt --model_file cnn3_emotion.pt \\
        my_recordings/ hello.wav --out predictions.csv --plot plots/

Each model is rebuilt from the JSON saved beside its .pt (architecture, classes, image size, spectrogram
parameters) and each file goes through exactly the steps its training clips went through: loaded as mono at
the model's sample rate (any rate, stereo is downmixed), log-mel spectrogram, 8-bit image, resized. One line
per file is printed with each model's predicted class and class probabilities; --out writes the same as CSV
(one row per file, columns per category). A file that cannot be read is reported, the others are still
classified, and the exit status is 2 at the end.
"""
from __future__ import annotations

import argparse
import os
from collections import Counter

import pandas as pd
from tqdm import tqdm

from toolkit.cli import Parser, add_device_flags, in_folder, pick_device, run_main
from toolkit.errors import ToolkitError
from toolkit.fileio import write_csv
from toolkit.inference import Preprocessing, class_probabilities, expand_audio_paths, load_trained_model
from toolkit.plots import plot_spectrogram


def get_args_parser() -> Parser:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, MP3, ...; any sample rate, mono or stereo) "
                                            "or folders: a folder means every audio file directly inside it")
    p.add_argument("--model_dir", default="Models/", help="folder holding the model files (default: Models/)")
    p.add_argument("--model_file", action="append", required=True, metavar="PT",
                   help="a trained model, e.g. cnn3_sex.pt, with its .json beside it; looked up in --model_dir unless "
                        "it is a path. Repeat the flag to run several models (e.g. sex and emotion) on each file")
    p.add_argument("--out", default=None, metavar="CSV",
                   help="write the predictions here: one row per file; per model the predicted class and p_{class} "
                        "columns, named after the category (after the model file when two models share a category)")
    p.add_argument("--plot", default=None, metavar="DIR",
                   help="save each file's spectrogram, titled with the predictions, as DIR/{file name}.png")
    add_device_flags(p)
    return p


def column_prefixes(model_paths: list[str], sidecars: list[dict]) -> list[str]:
    """Each model's column name: its category, or its file name when two models classify the same category."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in model_paths]
    categories = [s.get("category") or stem for s, stem in zip(sidecars, stems)]
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


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    device = pick_device(args.device, args.threads)
    model_paths = [in_folder(f, args.model_dir) for f in args.model_file]
    models, sidecars = zip(*(load_trained_model(p, device) for p in model_paths))
    for path, sidecar in zip(model_paths, sidecars):
        if not sidecar.get("spectrogram"):
            print(f"warning: {path}'s JSON has no spectrogram parameters (its images had no params.json); "
                  f"using the defaults, which may not be how its training images were made")
    preps = [Preprocessing.from_sidecar(s) for s in sidecars]
    prefixes = column_prefixes(model_paths, list(sidecars))
    files = expand_audio_paths(args.audio)
    plot_names = unique_png_names(files)

    columns = ["file"] + [c for pre, s in zip(prefixes, sidecars) for c in [pre] + [f"{pre}_p_{k}" for k in s["classes"]]]
    rows, failed = [], []
    bar = tqdm(files, desc="classifying", unit="file", leave=False, disable=len(files) < 10)
    for path in bar:
        row = {"file": path, "error": ""}
        try:
            # Models trained on the same kind of images share one spectrogram per file.
            images = {prep: prep.audio_to_image(path) for prep in dict.fromkeys(preps)}
        except Exception as e:  # one bad file never stops the others (ClipError says what is wrong with it)
            row["error"] = str(e) if isinstance(e, ToolkitError) else f"{path}: {type(e).__name__}: {e}"
            failed.append(path)
            rows.append(row)
            bar.write(f"FAILED {row['error']}")
            continue
        summary = []
        for model, sidecar, prep, pre in zip(models, sidecars, preps, prefixes):
            probs = class_probabilities(model, prep.image_to_input(images[prep])[None], device)[0]
            classes = sidecar["classes"]
            row[pre] = classes[probs.argmax()]
            row.update({f"{pre}_p_{c}": round(float(p), 6) for c, p in zip(classes, probs)})
            summary.append(f"{pre}: {row[pre]} ({', '.join(f'{c} {p:.3f}' for c, p in zip(classes, probs))})")
        rows.append(row)
        bar.write(f"{path}  " + "  ".join(summary))
        if args.plot:
            mel = preps[0].mel
            title = f"{os.path.basename(path)}: " + ", ".join(f"{pre} {row[pre]} ({row[f'{pre}_p_{row[pre]}']:.2f})" for pre in prefixes)
            plot_spectrogram(images[preps[0]], os.path.join(args.plot, plot_names[path]), title,
                             hop_seconds=mel.hop_length / mel.sr)

    if args.out:
        write_csv(pd.DataFrame(rows, columns=columns + ["error"]), args.out)
    done = len(files) - len(failed)
    print(f"classified {done} of {len(files)} file(s) with {len(models)} model(s)"
          + (f"; wrote {args.out}" if args.out else "") + (f"; spectrograms in {args.plot}" if args.plot else ""))
    if failed:
        raise ToolkitError(f"{len(failed)} of {len(files)} file(s) could not be classified (FAILED lines above, e.g. "
                           f"{failed[0]}); fix or remove them")


if __name__ == "__main__":
    run_main(main)
