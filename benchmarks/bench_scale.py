"""Peak memory and time to the first training step of stage 3 on a packed feature store, against the number of clips.

For each N, one subprocess synthesises N random uint8 128×128 "spectrograms" into a split CSV and its packed store
(toolkit/features/store.py; no audio, no PNGs); a second, fresh subprocess then does what stage 3 does up to training:
load_split (memory-maps the store), build cnn3, and run --steps training steps of batch 64 through batches() and the
engine's training step; it reports its peak RSS (getrusage ru_maxrss: every page it touched, the mapped store's
included) and the time from the start of load_split to the end of the first step. --mode eager also copies the
whole split into memory first (what stage 3 did before the store: a uint8 tensor of the split), for comparison.

    python3 benchmarks/bench_scale.py                       # N = 10,000 and 100,000, lazy and eager
    python3 benchmarks/bench_scale.py --sizes 1000 --modes lazy --keep /tmp/bench_scale

--extraction instead times stage 2 itself across processes: generate_mel_spectrograms.py --no_png --workers 1 on
--clips synthetic clips as one process and under `torchrun --standalone --nproc_per_node P` for each --processes P,
end to end (interpreter start-up, the barrier and rank 0's merge included), as clips/s.

    python3 benchmarks/bench_scale.py --extraction --clips 480 --processes 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def synthesize(folder: str, n: int, seed: int = 0) -> str:
    """sex_train.csv with n rows and its packed store of random 128×128 uint8 images; returns the CSV path."""
    import numpy as np
    import pandas as pd

    from toolkit.features.store import write_store

    os.makedirs(folder, exist_ok=True)
    csv = os.path.join(folder, "sex_train.csv")
    rows = [f"mel/{i:07d}.0123456789.png" for i in range(n)]
    pd.DataFrame({"Audio_file_name": [f"{i:07d}" for i in range(n)], "ActorID": [1000 + i % 91 for i in range(n)],
                  "sex": ["Male" if i % 2 else "Female" for i in range(n)], "Image_file_path": rows}).to_csv(csv, index=False)
    rng = np.random.default_rng(seed)

    def items():
        for start in range(0, n, 1000):
            yield from rng.integers(0, 256, (min(1000, n - start), 128, 128), dtype=np.uint8)

    write_store(csv, "mel", "uint8", rows, items, {"n_mels": 128})
    return csv


def labelled_clips(folder: str, clips: int, per_speaker: int = 4) -> str:
    """`clips` synthetic CREMA-D-shaped clips (demo/synth.py, `per_speaker` each) and a stage-1 CSV for category sex
    beside them (sex_with_audio_path.csv); returns the folder."""
    import glob

    import pandas as pd

    from demo.synth import build_corpus

    build_corpus(folder, actors=-(-clips // per_speaker), clips_per_actor=per_speaker, seed=0, workers=1, progress=False)
    wavs = sorted(glob.glob(os.path.join(folder, "AudioWAV", "*.wav")))[:clips]
    actors = [os.path.basename(w).split("_")[0] for w in wavs]
    pd.DataFrame({"Audio_file_name": [os.path.basename(w) for w in wavs], "Audio_file_path": wavs, "ActorID": actors,
                  "sex": ["Male" if int(a) % 2 else "Female" for a in actors]}).to_csv(
        os.path.join(folder, "sex_with_audio_path.csv"), index=False)
    return folder


def extraction(base: str, clips: int, processes: list[int], features: str) -> list[dict]:
    """Stage 2 (--no_png, one worker per process) on `clips` clips with each number of processes: clips/s."""
    data = labelled_clips(os.path.join(base, "corpus"), clips)
    rows = []
    for n in processes:
        out = os.path.join(base, f"p{n}")
        shutil.rmtree(out, ignore_errors=True)
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"] if n > 1 else []
        load = os.getloadavg()[0]
        t = time.perf_counter()
        subprocess.run([sys.executable, *launcher, os.path.join(ROOT, "generate_mel_spectrograms.py"), "--load_csv_path",
                        data, "--save_spec_path", out, "--save_csv_path", out, "--category", "sex", "--features",
                        features, "--no_png", "--workers", "1", "--split", "random"], check=True, capture_output=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        seconds = time.perf_counter() - t
        rows.append({"processes": n, "clips": clips, "features": features, "seconds": seconds,
                     "clips_per_s": clips / seconds, "load_before": load, "load_after": os.getloadavg()[0]})
        print(f"stage 2 --features {features} --no_png, {n} process(es): {clips} clips in {seconds:.1f} s = "
              f"{clips / seconds:.1f} clips/s (load {load:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
    return rows


def train_steps(csv: str, steps: int, mode: str, threads: int) -> dict:
    """Stage 3 up to `steps` training steps of cnn3 on the CSV's store; what it cost."""
    import torch

    torch.set_num_threads(threads)
    from models import build_model
    from toolkit.config import RECIPES
    from toolkit.training.data import batches, load_split
    from toolkit.training.engine import make_optimizer, train_batches

    config = RECIPES["seed"]  # time_axis 'resize': a 128×128 image is the network's input as it is
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    data = load_split(csv, "sex", config)
    if mode == "eager":
        data.x = data.x[:]  # the whole split as one uint8 tensor in memory
    t_load = time.perf_counter() - t0
    model = build_model("cnn3", 2, data.input_shape())
    optimizer = make_optimizer(model, config.learning_rate, config.weight_decay)
    generator = torch.Generator().manual_seed(0)
    it = batches(data, 64, torch.device("cpu"), generator)
    times = []
    for _ in range(steps):
        s = time.perf_counter()
        train_batches(model, optimizer, [next(it)], torch.device("cpu"))
        times.append(time.perf_counter() - s)
        if len(times) == 1:
            first = time.perf_counter() - t0
    return {"n": len(data), "mode": mode, "load_s": t_load, "first_step_after_s": first, "first_step_s": times[0],
            "later_step_s": sum(times[1:]) / max(1, len(times) - 1), "steps": steps,
            "rss_before_load_mib": rss0 / 1024, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--modes", nargs="+", choices=["lazy", "eager"], default=["lazy", "eager"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keep", default=None, help="folder for the synthetic stores (kept); default a temporary one")
    p.add_argument("--extraction", action="store_true", help="time stage 2 across processes instead (see above)")
    p.add_argument("--clips", type=int, default=480, help="--extraction: clips")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="--extraction: process counts")
    p.add_argument("--features", default="mel", help="--extraction: stage 2's --features")
    p.add_argument("--_synth", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--_train", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._synth:
        print(synthesize(args._synth[0], int(args._synth[1])))
        return
    if args._train:
        print(json.dumps(train_steps(args._train[0], args.steps, args._train[1], args.threads)))
        return
    base = args.keep or tempfile.mkdtemp(prefix="bench_scale.")
    results = []
    try:
        if args.extraction:
            results = extraction(base, args.clips, args.processes, args.features)
        for n in [] if args.extraction else args.sizes:
            folder = os.path.join(base, f"n{n}")
            t = time.perf_counter()
            csv = subprocess.run([sys.executable, __file__, "--_synth", folder, str(n)], check=True, capture_output=True,
                                 text=True).stdout.strip()
            synth_s = time.perf_counter() - t
            for mode in args.modes:
                out = subprocess.run([sys.executable, __file__, "--_train", csv, mode, "--steps", str(args.steps),
                                      "--threads", str(args.threads)], check=True, capture_output=True, text=True)
                row = {**json.loads(out.stdout.strip().splitlines()[-1]), "synth_s": synth_s,
                       "store_mib": os.path.getsize(csv.replace(".csv", ".store.bin")) / 2**20}
                results.append(row)
                print(f"N {n:>7,} {mode:5s}: peak RSS {row['peak_rss_mib']:7.0f} MiB, load {row['load_s']:6.2f} s, "
                      f"first step done {row['first_step_after_s']:6.2f} s after load began (step {row['first_step_s']:.3f} s,"
                      f" later steps {row['later_step_s']:.3f} s), store {row['store_mib']:.0f} MiB written in "
                      f"{synth_s:.1f} s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    os.makedirs(os.path.join(ROOT, "runs", "bench"), exist_ok=True)
    name = "bench_scale_extraction.json" if args.extraction else "bench_scale.json"
    with open(os.path.join(ROOT, "runs", "bench", name), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
