"""Peak memory of reading a long many-channel high-rate recording (issue 26): predict.py and stage 2 on one file.

For each of --hours the file is a 16-bit FLAC at --rate Hz with --channels channels (2 h × 8 ch × 192 kHz is 22 GB as
WAV, 2.5 GB as this FLAC; a whole float32 read of it would allocate 44 GB). predict.py classifies it, and stage 2
(generate_mel_spectrograms.py, its default feature: mel) makes its spectrogram with nine 10-second clips beside it, so
that there is something to split. Each command runs in its own process under /usr/bin/time -v; its maximum resident
set size is reported. The files are deleted at the end.

    python benchmarks/bench_long_audio.py --model_file Models/demo/cnn3_sex.pt --out /tmp/long_audio --hours 0.25 2
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def long_audio(path: str, seconds: float, rate: int, channels: int) -> None:
    """A 16-bit FLAC (WAV, RF64 past 4 GB, if the name ends in .wav): a 220 Hz tone whose level varies every second, on
    every channel, written one second at a time. (Not digital silence, which would be refused as silent before the part
    worth measuring; a steady tone is what keeps the FLAC small: 21 MB a minute at 8 ch × 192 kHz.)"""
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 220 * t)
    kind = dict(format="RF64") if path.endswith(".wav") else dict(format="FLAC")
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16", **kind) as f:
        for second in range(int(seconds)):
            f.write(np.repeat((0.1 + 0.2 * (second % 5) / 4) * tone[:, None], channels, axis=1).astype(np.float32))


def peak_rss(command: list[str]) -> tuple[float, float, str]:
    """(max RSS in MB, seconds, last line of output) of a command run under /usr/bin/time -v."""
    start = time.time()
    proc = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, cwd=ROOT)
    seconds = time.time() - start
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip() and not line.startswith("\t")
             and "Command exited with non-zero status" not in line]
    return rss, seconds, (lines[-1] if lines else "") + f" (exit {proc.returncode})"


def measure(hours: float, args, rows: list[dict]) -> None:
    folder = os.path.join(args.out, f"{hours:g}h")
    clip_dir = os.path.join(folder, "AudioWAV")
    os.makedirs(clip_dir, exist_ok=True)
    long = os.path.join(clip_dir, f"1001_DFA_ANG_XX.{args.format}")
    start = time.time()
    long_audio(long, hours * 3600, args.rate, args.channels)
    info = sf.info(long)
    file = (f"{info.frames / info.samplerate / 3600:g} h, {info.channels} ch, {info.samplerate} Hz, "
            f"{info.format} {info.subtype}, {os.path.getsize(long) / 1e9:.2f} GB")
    print(f"{long}: {file} (written in {time.time() - start:.0f} s); a whole float32 read would allocate "
          f"{info.frames * info.channels * 4 / 1e9:.1f} GB", flush=True)
    cap = str(int(hours * 3600) + 1)  # --max_seconds: the default (1 h) would refuse a longer file from its header
    rss, took, last = peak_rss(["nice", "-n", "10", sys.executable, "predict.py", "--model_file", args.model_file, long,
                                "--workers", "1", "--threads", "1", "--max_seconds", cap,
                                "--out", os.path.join(folder, "p.csv")])
    print(f"predict.py: peak RSS {rss:.0f} MB, {took:.0f} s: {last}", flush=True)
    rows.append(dict(command="predict.py", hours=hours, file=file, peak_rss_mb=round(rss), seconds=round(took), last=last))
    # nine 10-second clips beside it (other speakers, both classes) so that stage 2 has something to split
    for i in range(1, 10):
        long_audio(os.path.join(clip_dir, f"{1001 + i if i < 5 else 1010 + i}_DFA_ANG_XX.{args.format}"), 10, args.rate,
                   args.channels)
    lines = [f"{'Male' if int(n[:4]) < 1010 else 'Female'},{n},{os.path.join(clip_dir, n)},{n[:4]}"
             for n in sorted(os.listdir(clip_dir))]
    with open(os.path.join(folder, "sex_with_audio_path.csv"), "w") as f:
        f.write("sex,Audio_file_name,Audio_file_path,ActorID\n" + "\n".join(lines) + "\n")
    rss, took, last = peak_rss(["nice", "-n", "10", sys.executable, "generate_mel_spectrograms.py", "--load_csv_path",
                                folder, "--save_spec_path", folder, "--save_csv_path", folder, "--workers", "1",
                                "--max_seconds", cap, "--split", "random", "--val_fraction", "0.3",
                                "--test_fraction", "0.3"])
    print(f"generate_mel_spectrograms.py: peak RSS {rss:.0f} MB, {took:.0f} s: {last}", flush=True)
    rows.append(dict(command="generate_mel_spectrograms.py", hours=hours, file=file + " + nine 10-s clips",
                     peak_rss_mb=round(rss), seconds=round(took), last=last))
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_file", required=True)
    p.add_argument("--out", required=True, help="scratch folder (its audio is deleted at the end)")
    p.add_argument("--hours", type=float, nargs="+", default=[0.25, 2.0], help="one long file of each length")
    p.add_argument("--rate", type=int, default=192000)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--format", choices=["flac", "wav"], default="flac")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rss, _, _ = peak_rss([sys.executable, "-c", "import torch, toolkit.serving.inference, toolkit.features.mel"])
    print(f"importing torch and the toolkit alone: peak RSS {rss:.0f} MB", flush=True)
    rows = [dict(command="import torch, toolkit.serving.inference, toolkit.features.mel", hours=0, peak_rss_mb=round(rss))]
    try:
        for hours in args.hours:
            measure(hours, args, rows)
    finally:
        for hours in args.hours:
            shutil.rmtree(os.path.join(args.out, f"{hours:g}h"), ignore_errors=True)
        with open(os.path.join(args.out, "bench_long_audio.json"), "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
