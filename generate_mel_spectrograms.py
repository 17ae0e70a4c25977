"""Stage 2: audio -> log-mel spectrogram PNGs + {category}_train/val/test.csv (72/8/20, stratified).

Images go to {save_spec_path}/mel_spectrograms/{parameter tag}/, one lossless 8-bit PNG per clip; clips whose
image already exists for the same parameters are skipped, so an interrupted run continues where it stopped.
"""
from __future__ import annotations

import argparse
import os

from toolkit.audio import PARAMS_FILE, MelParams, parallel_map, spectrogram_job, warm_up
from toolkit.cli import Parser, positive_int, run_main
from toolkit.errors import ToolkitError
from toolkit.fileio import output_dir, read_csv, read_json, relative_to_csv, resolve_from_csv, write_csv, write_json
from toolkit.labels import CATEGORIES, check_category, encode_labels
from toolkit.splits import make_splits


def get_args_parser() -> Parser:
    p = Parser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--load_csv_path", default="Data/", help="folder with {category}_with_audio_path.csv (stage 1)")
    p.add_argument("--save_spec_path", default="Data/", help="images go to {save_spec_path}/mel_spectrograms/")
    p.add_argument("--save_csv_path", default="Data/", help="folder for the train/val/test CSVs")
    p.add_argument("--category", default="sex", help=f"label: {', '.join(CATEGORIES)}")
    p.add_argument("--sr", type=positive_int, default=16000, help="sample rate audio is resampled to")
    p.add_argument("--n_fft", type=positive_int, default=1536, help="STFT window length (samples)")
    p.add_argument("--hop_length", type=positive_int, default=512, help="STFT hop (samples)")
    p.add_argument("--n_mels", type=positive_int, default=180, help="mel bands (image height)")
    p.add_argument("--db_ref", choices=["max", "fixed"], default="fixed",
                   help="dB reference: 'fixed' = full scale, window -40..+40 dB, so loudness survives (measured in "
                        "experiments/RESULTS.md); 'max' = each clip's own peak, as the seed (loudness lost)")
    p.add_argument("--split", choices=["speaker", "random"], default="speaker",
                   help="'speaker': no speaker in two splits; 'random': clips shuffled (the seed's)")
    p.add_argument("--seed", type=int, default=42, help="random seed of the split")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="parallel processes")
    return p


def make_images(audio_paths: list[str], image_paths: list[str], params: MelParams, workers: int) -> dict[str, str]:
    """Compute the missing images in parallel; returns {image path: error} for clips that failed."""
    # only the missing images go to the workers: a re-run of a finished stage starts no processes
    jobs = [(a, i, params) for a, i in zip(audio_paths, image_paths) if not os.path.exists(i)]
    workers = min(workers, len(jobs))
    print(f"{len(audio_paths)} clips, {len(audio_paths) - len(jobs)} images already made, {len(jobs)} to make with {workers} worker(s)")
    if jobs:
        warm_up(params)
    return {image: error for image, error in parallel_map(spectrogram_job, jobs, workers, desc="spectrograms") if error}


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    check_category(args.category)
    params = MelParams(sr=args.sr, n_fft=args.n_fft, hop_length=args.hop_length, n_mels=args.n_mels, db_ref=args.db_ref)
    in_csv = os.path.join(args.load_csv_path, f"{args.category}_with_audio_path.csv")
    table = read_csv(in_csv, [args.category, "Audio_file_name", "Audio_file_path", "ActorID"])
    encode_labels(table, args.category, in_csv)  # a label outside the class list fails now, not after the images
    make_splits(table, args.category, args.split, args.seed, source=in_csv)  # so does too little data to split
    output_dir(args.save_csv_path, "--save_csv_path")
    image_dir = output_dir(os.path.join(args.save_spec_path, "mel_spectrograms", params.tag()), "--save_spec_path")
    params_file = os.path.join(image_dir, PARAMS_FILE)
    if not os.path.isfile(params_file) or read_json(params_file) != params.to_dict():
        write_json(params.to_dict(), params_file)

    audio = [resolve_from_csv(p, in_csv) for p in table["Audio_file_path"].astype(str)]
    # basename: a file name in a CSV never places an image outside image_dir
    images = [os.path.join(image_dir, os.path.splitext(os.path.basename(n))[0] + ".png") for n in table["Audio_file_name"].astype(str)]
    errors = make_images(audio, images, params, args.workers)
    table["Image_file_path"] = images
    failed = table[[i in errors for i in images]]
    table = table[[i not in errors for i in images]]
    failed_csv = os.path.join(args.save_csv_path, f"{args.category}_failed_clips.csv")
    if errors:
        write_csv(failed[["Audio_file_name", "ActorID", args.category]].assign(error=[errors[i] for i in failed["Image_file_path"]]),
                  failed_csv)
    elif os.path.isfile(failed_csv):
        os.remove(failed_csv)  # from an earlier run whose problems are fixed now
    if table.empty:
        raise ToolkitError(f"{in_csv}: no clip could be turned into a spectrogram; the reasons are in {failed_csv}")

    splits = make_splits(table, args.category, args.split, args.seed, source=in_csv)
    for name, part in splits.items():
        out = os.path.join(args.save_csv_path, f"{args.category}_{name}.csv")
        part = part.assign(Image_file_path=[relative_to_csv(p, out) for p in part["Image_file_path"]],
                           Audio_file_path=[relative_to_csv(resolve_from_csv(p, in_csv), out) for p in part["Audio_file_path"]])
        write_csv(part, out)
        counts = ", ".join(f"{k} {v}" for k, v in part[args.category].value_counts().items())
        print(f"wrote {out}: {len(part)} clips, {part['ActorID'].nunique()} speakers ({counts})")
    if errors:  # the summary comes last, where it is seen: which clips were left out and why
        print(f"warning: {len(errors)} clip(s) could not be used and are left out (all listed in {failed_csv}):")
        for error in list(errors.values())[:10]:
            print(f"  {error}")
        if len(errors) > 10:
            print(f"  ... and {len(errors) - 10} more")


if __name__ == "__main__":
    run_main(main)
