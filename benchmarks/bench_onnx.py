"""predict.py with --backend torch and --backend onnx: start-up, files per second and peak memory, as a user runs it.

Makes N one-second WAVs and a cnn3 model (random weights: speed does not depend on them; bench_predict.py's), exports
it (export_onnx's check runs on 8 of the files), then runs, per backend, `predict.py ONE_FILE` (start-up: interpreter,
imports, model loading, one file) and `predict.py FOLDER --out predictions.csv` (N files), each in a fresh process
under /usr/bin/time, --workers 1 --threads 1 so that the two backends get the same CPU, the backends taking turns.
Reported: the best of the repeats of CPU seconds (user + system, which other work on a shared machine distorts far
less than wall time), wall seconds and peak resident memory; the cost of a further file is (N files - 1 file) / (N - 1).

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


def timed(cmd: list[str]) -> dict:
    """Wall seconds, CPU seconds (user + system: what the machine's other work distorts least) and peak resident
    MiB of one run of `cmd` in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "MEASURED %M %U %S", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    kib, user, system = proc.stderr.rsplit("MEASURED ", 1)[1].split()[:3]
    return {"wall": wall, "cpu": float(user) + float(system), "mib": int(kib) / 1024}


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
        runs = {name: {"one": [], "many": []} for name in backends}
        for _ in range(args.repeats):  # the backends take turns, so that both see the same load
            for name, flags in backends.items():
                runs[name]["one"].append(timed([*predict, *flags, files[0]]))
                runs[name]["many"].append(timed([*predict, *flags, os.path.dirname(files[0]),
                                                 "--out", os.path.join(work, f"{name}.csv")]))
        results = {}
        for name, r in runs.items():
            best = {k: {m: min(run[m] for run in r[k]) for m in ("wall", "cpu", "mib")} for k in ("one", "many")}
            per_file_cpu = (best["many"]["cpu"] - best["one"]["cpu"]) / (len(files) - 1)
            results[name] = {"startup": best["one"], "all_files": best["many"], "cpu_seconds_per_file": per_file_cpu,
                             "files_per_cpu_second": 1 / per_file_cpu if per_file_cpu > 0 else None, "runs": r}
            print(f"{name:5s}: start-up (1 file) {best['one']['cpu']:.2f} CPU s ({best['one']['wall']:.1f} s wall), "
                  f"{len(files)} files {best['many']['cpu']:.2f} CPU s ({best['many']['wall']:.1f} s wall); "
                  f"{per_file_cpu * 1000:.0f} CPU ms per further file; peak memory {best['one']['mib']:.0f} MiB (1 file), "
                  f"{best['many']['mib']:.0f} MiB ({len(files)} files)  [best of {args.repeats}]")
        print(f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
        if args.json:
            write_json({"files": len(files), "repeats": args.repeats, "results": results, "loadavg": os.getloadavg(),
                        "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}, args.json)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
