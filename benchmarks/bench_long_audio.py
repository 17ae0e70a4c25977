"""Peak memory of reading a long many-channel high-rate recording (issue 26): predict.py and stage 2 on one file.

The file is a 16-bit RF64 WAV of --hours at --rate Hz with --channels channels (30 min × 8 ch × 192 kHz is 5.5 GB
of disk; 2 h would be 22 GB); stage 2 gets ten shorter ones. Each command runs in its own process under
/usr/bin/time -v; its maximum resident set size is reported. The file is deleted at the end.

    python benchmarks/bench_long_audio.py --model_file Models/demo/cnn3_sex.pt --out /tmp/long_audio
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def long_wav(path: str, seconds: float, rate: int, channels: int) -> None:
    """A 16-bit RF64 WAV (past 4 GB a plain WAV header cannot say its length): a 220 Hz tone whose level varies
    every second, on every channel, written one second at a time. (Not sparse: a file of digital silence would be
    refused as too quiet before the part worth measuring.)"""
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 220 * t)
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16", format="RF64") as f:
        for second in range(int(seconds)):
            f.write(np.repeat((0.1 + 0.2 * (second % 5) / 4) * tone[:, None], channels, axis=1).astype(np.float32))


def peak_rss(command: list[str]) -> tuple[float, float, str]:
    """(max RSS in MB, seconds, last line of output) of a command run under /usr/bin/time -v."""
    start = time.time()
    proc = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, cwd=ROOT)
    seconds = time.time() - start
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip() and not line.startswith("\t")]
    return rss, seconds, (lines[-1] if lines else "") + f" (exit {proc.returncode})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_file", required=True)
    p.add_argument("--out", required=True, help="scratch folder (deleted at the end)")
    p.add_argument("--hours", type=float, default=2.0)
    p.add_argument("--rate", type=int, default=192000)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--stage2_minutes", type=float, default=1.0, help="stage 2's files (a spectrogram of it is made)")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    try:
        long = os.path.join(args.out, "long.wav")
        long_wav(long, args.hours * 3600, args.rate, args.channels)
        info = sf.info(long)
        print(f"{long}: {info.frames / info.samplerate / 3600:.2f} h, {info.channels} ch, {info.samplerate} Hz, "
              f"{os.path.getsize(long) / 1e9:.1f} GB; "
              f"a whole float32 read would allocate {info.frames * info.channels * 4 / 1e9:.1f} GB")
        seconds = int(args.hours * 3600) + 1
        rss, took, _ = peak_rss([sys.executable, "-c", "import torch, toolkit.serving.inference, toolkit.features.mel"])
        print(f"importing torch and the toolkit alone: peak RSS {rss:.0f} MB")
        rss, took, last = peak_rss([sys.executable, "predict.py", "--model_file", args.model_file, long, "--workers", "1",
                                    "--threads", "1", "--max_seconds", str(seconds), "--out", os.path.join(args.out, "p.csv")])
        print(f"predict.py: peak RSS {rss:.0f} MB, {took:.0f} s: {last}")
        clip_dir = os.path.join(args.out, "AudioWAV")
        os.makedirs(clip_dir, exist_ok=True)
        for i in range(5):  # five one-file speakers per class: enough for a stratified 40/30/30 split
            for sex, actor in (("Male", 1001 + i), ("Female", 1010 + i)):
                long_wav(os.path.join(clip_dir, f"{actor}_DFA_ANG_XX.wav"), args.stage2_minutes * 60, args.rate,
                            args.channels)
        rows = [f"{sex},{n},{os.path.join(clip_dir, n)},{n[:4]}" for n in sorted(os.listdir(clip_dir))
                for sex in (("Male" if int(n[:4]) < 1010 else "Female"),)]
        with open(os.path.join(args.out, "sex_with_audio_path.csv"), "w") as f:
            f.write("sex,Audio_file_name,Audio_file_path,ActorID\n" + "\n".join(rows) + "\n")
        rss, took, last = peak_rss([sys.executable, "generate_mel_spectrograms.py", "--load_csv_path", args.out,
                                    "--save_spec_path", args.out, "--save_csv_path", args.out, "--workers", "1",
                                    "--max_seconds", str(int(args.stage2_minutes * 60) + 1), "--split", "random",
                                    "--val_fraction", "0.3", "--test_fraction", "0.3"])
        print(f"generate_mel_spectrograms.py ({len(rows)} files of {args.stage2_minutes:g} min, {args.channels} ch, "
              f"{args.rate} Hz): peak RSS {rss:.0f} MB, {took:.0f} s: {last}")
    finally:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
