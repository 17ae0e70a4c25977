"""predict.py with --backend torch and --backend onnx: start-up, files per second and peak memory, as a user runs it.

Makes N one-second WAVs and a cnn3 model (random weights: speed does not depend on them; bench_predict.py's), exports
it (export_onnx's check runs on 8 of the files), then times, per backend, `predict.py ONE_FILE` (start-up: interpreter,
imports, model loading, one file) and `predict.py FOLDER --out predictions.csv` (N files), each in a fresh process
under /usr/bin/time (peak resident memory), --workers 1 --threads 1 so that the two backends get the same CPU.

    python3 benchmarks/bench_onnx.py                      # 200 files, 3 repeats
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
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from bench_predict import make_files, make_model  # noqa: E402
from toolkit.fileio import write_json  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of one run of `cmd` in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    kib = int(proc.stderr.rsplit("MAXRSS ", 1)[1].split()[0])
    return seconds, kib / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each (the median is reported)")
    ap.add_argument("--json", default="runs/bench/onnx.json")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench_onnx_")
    try:
        files = make_files(work, args.files)
        model = make_model(work)
        export = os.path.join(work, "cnn3_sex_onnx")
        subprocess.run([sys.executable, os.path.join(ROOT, "export_onnx.py"), "--model_file", model, "--out", export,
                        "--check_audio", *files[:8], "--threads", "1"], check=True, capture_output=True)
        predict = [sys.executable, os.path.join(ROOT, "predict.py"), "--workers", "1", "--threads", "1"]
        backends = {"torch": ["--model_file", model, "--device", "cpu"], "onnx": ["--backend", "onnx", "--model_file", export]}
        results = {}
        for name, flags in backends.items():
            one = [timed([*predict, *flags, files[0]]) for _ in range(args.repeats)]
            many = [timed([*predict, *flags, os.path.dirname(files[0]), "--out", os.path.join(work, f"{name}.csv")])
                    for _ in range(args.repeats)]
            start, many_s = float(np.median([s for s, _ in one])), float(np.median([s for s, _ in many]))
            results[name] = {"startup_seconds": start, "files_seconds": many_s,
                             "files_per_second_end_to_end": len(files) / many_s,
                             "files_per_second_after_startup": (len(files) - 1) / max(many_s - start, 1e-9),
                             "peak_mib_one_file": max(m for _, m in one), "peak_mib_all_files": max(m for _, m in many),
                             "runs": {"one": one, "many": many}}
            r = results[name]
            print(f"{name:5s}: start-up (1 file) {start:.2f} s, {len(files)} files {many_s:.2f} s = "
                  f"{r['files_per_second_end_to_end']:.1f} files/s end to end, {r['files_per_second_after_startup']:.1f} "
                  f"files/s after start-up; peak memory {r['peak_mib_one_file']:.0f} MiB (1 file), "
                  f"{r['peak_mib_all_files']:.0f} MiB ({len(files)} files)")
        print(f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
        if args.json:
            write_json({"files": len(files), "repeats": args.repeats, "results": results, "loadavg": os.getloadavg(),
                        "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}, args.json)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
