"""A full-size speech encoder through the toolkit, as a user runs it: `--features ssl` extraction and one fine-tuning
epoch of train_wav2vec2.py, with clips/s and peak memory.

The encoder is wav2vec2-base's real architecture (transformers' Wav2Vec2Config() defaults: 7-layer CNN front end of
512 channels, 12 transformer layers × 768, 95 M parameters) with random weights, built here and saved to a folder
as a downloaded model is laid out (nothing is downloaded; random weights cost the same time as pretrained ones).
The clips are synthetic CREMA-D-shaped ones (demo/synth.py, ~2.5 s each). Each stage runs as its own command in a
fresh interpreter, timed from outside (start-up, model loading and the split's evaluation included); peak memory is
the child's ru_maxrss.

    python3 benchmarks/bench_encoder.py                         # 16 clips: a few minutes on 2 CPU cores
    python3 benchmarks/bench_encoder.py --clips 240 --device cuda   # on a GPU
"""
from __future__ import annotations

import argparse
import glob
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_scale import labelled_clips  # noqa: E402


def save_base_encoder(out: str, seed: int = 0) -> int:
    """wav2vec2-base's architecture with random weights, saved like a downloaded model; returns its parameter count."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
    from transformers.utils import logging

    logging.disable_progress_bar()
    torch.manual_seed(seed)
    model = Wav2Vec2Model(Wav2Vec2Config())
    model.save_pretrained(out)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def timed_command(*args: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one command. The RSS is ru_maxrss over the children so far: the largest of
    this command's and those before it (the extraction runs first, so the fine-tuning figure is a maximum of both)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=16, help="clips extracted (and split 60/20/20 for the epoch)")
    p.add_argument("--device", default="cpu", help="'cpu', 'cuda' or 'auto'")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads of the fine-tuning run")
    p.add_argument("--batch_size", type=int, default=4, help="fine-tuning clips per batch (train_wav2vec2.py's default)")
    p.add_argument("--skip_training", action="store_true", help="time the extraction only")
    p.add_argument("--json", default="runs/bench/encoder.json", help="figures as JSON")
    args = p.parse_args()
    import soundfile

    from toolkit.fileio import write_json

    work = tempfile.mkdtemp(prefix="bench_encoder_")
    try:
        encoder = os.path.join(work, "wav2vec2-base-random")
        parameters = save_base_encoder(encoder)
        data = labelled_clips(os.path.join(work, "corpus"), args.clips)
        wavs = sorted(glob.glob(os.path.join(data, "AudioWAV", "*.wav")))[: args.clips]
        audio_seconds = sum(soundfile.info(w).duration for w in wavs)
        load = os.getloadavg()[0]
        print(f"wav2vec2-base architecture, random weights: {parameters / 1e6:.1f} M parameters; {args.clips} clips, "
              f"{audio_seconds:.1f} s of audio; load average {load:.2f}", flush=True)
        features = os.path.join(work, "ssl")
        seconds, rss = timed_command("generate_mel_spectrograms.py", "--load_csv_path", data, "--save_spec_path", features,
                                     "--save_csv_path", features, "--category", "sex", "--features", "ssl", "--encoder",
                                     encoder, "--no_png", "--split", "random", "--val_fraction", "0.2", "--test_fraction",
                                     "0.2", "--workers", "1")  # 60/20/20: small runs still have both classes in each part
        figures = {"parameters": parameters, "clips": args.clips, "audio_seconds": audio_seconds, "load_start": load,
                   "extraction": {"seconds": seconds, "clips_per_s": args.clips / seconds,
                                  "audio_seconds_per_s": audio_seconds / seconds, "peak_rss_mib": rss,
                                  "load_after": os.getloadavg()[0]}}
        print(f"--features ssl, 1 process, end to end: {seconds:.1f} s, {args.clips / seconds:.2f} clips/s "
              f"({audio_seconds / seconds:.2f} s of audio per s), peak RSS {rss:.0f} MiB, load {os.getloadavg()[0]:.1f}",
              flush=True)
        if not args.skip_training:
            import pandas as pd

            train = len(pd.read_csv(os.path.join(features, "sex_train.csv")))
            seconds, rss = timed_command("train_wav2vec2.py", "--csv_load_path", features, "--category", "sex",
                                         "--encoder", encoder, "--no-pretrained", "--epochs", "1", "--batch_size",
                                         str(args.batch_size), "--gradient_accumulation_steps", "1", "--device",
                                         args.device, "--threads", str(args.threads), "--model_save_path",
                                         os.path.join(work, "models"))
            figures["fine_tuning_epoch"] = {"train_clips": train, "seconds": seconds, "train_clips_per_s": train / seconds,
                                            "peak_rss_mib": rss, "load_after": os.getloadavg()[0]}
            print(f"train_wav2vec2.py, 1 epoch on {train} training clips (+ scoring val and test), end to end: "
                  f"{seconds:.1f} s, peak RSS {rss:.0f} MiB, load {os.getloadavg()[0]:.1f}")
        if args.json:
            write_json({**figures, "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
                        "device": args.device}, args.json)
            print(f"wrote {args.json}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
