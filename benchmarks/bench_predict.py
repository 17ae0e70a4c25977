"""predict.py on many short files: files per second end to end (decoding, spectrograms, windows, network, CSV).

Makes N one-second WAVs (the first second of synthetic demo clips) and a cnn3 model (random weights: the speed does not
depend on them) with a default run card, then times `predict.py FOLDER --out predictions.csv` as a user runs it,
interpreter start and imports included.

    python3 benchmarks/bench_predict.py                     # 1,000 files, --workers 2
    python3 benchmarks/bench_predict.py --files 200 --workers 1
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from toolkit.fileio import write_json  # noqa: E402


def make_files(folder: str, n: int) -> list[str]:
    import soundfile as sf

    from demo.synth import build_corpus

    corpus = os.path.join(folder, "corpus")
    build_corpus(corpus, actors=-(-n // 12), clips_per_actor=12, seed=0, workers=2, progress=False)
    out = os.path.join(folder, "one_second")
    os.makedirs(out)
    names = sorted(os.listdir(os.path.join(corpus, "AudioWAV")))[:n]
    for name in names:
        y, sr = sf.read(os.path.join(corpus, "AudioWAV", name))
        sf.write(os.path.join(out, name), y[:sr], sr, subtype="PCM_16")
    return [os.path.join(out, n) for n in names]


def make_model(folder: str) -> str:
    import torch

    from models import build_model
    from toolkit.config import RECIPES
    from toolkit.features.mel import Mel, MelParams
    from toolkit.runcard import RunCard

    torch.manual_seed(0)
    torch.save(build_model("cnn3", 2).state_dict(), os.path.join(folder, "cnn3_sex.pt"))
    RunCard(model="cnn3", category="sex", classes=["Male", "Female"],
            features={"type": "mel", "params": MelParams(db_ref="fixed").to_dict(), "stats": None},
            input={"kind": "image", "shape": [3, 128, 128], **Mel().input.input_options(RECIPES["default"])},
            training=RECIPES["default"].to_dict()).save(os.path.join(folder, "cnn3_sex.json"))
    return os.path.join(folder, "cnn3_sex.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (the median is reported)")
    ap.add_argument("--json", default="runs/bench/predict.json")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench_predict_")
    try:
        files = make_files(work, args.files)
        model = make_model(work)
        cmd = [sys.executable, os.path.join(ROOT, "predict.py"), "--model_file", model, os.path.dirname(files[0]),
               "--out", os.path.join(work, "predictions.csv"), "--workers", str(args.workers), "--device", "cpu"]
        seconds = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            seconds.append(time.perf_counter() - t0)
            if proc.returncode:
                raise SystemExit(f"predict.py failed:\n{proc.stderr[-2000:]}")
        median = float(np.median(seconds))
        print(f"{len(files)} one-second files, --workers {args.workers}: {median:.1f} s (median of {args.repeats}: "
              f"{', '.join(f'{s:.1f}' for s in seconds)}), {len(files) / median:.0f} files/s end to end; "
              f"load average {os.getloadavg()[0]:.2f}")
        if args.json:
            write_json({"files": len(files), "workers": args.workers, "seconds": seconds, "files_per_second": len(files) / median,
                        "loadavg": os.getloadavg(), "cpus": os.cpu_count(), "command": " ".join(cmd),
                        "date": time.strftime("%Y-%m-%d %H:%M")}, args.json)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
