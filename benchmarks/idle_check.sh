#!/usr/bin/env bash
# Issue 21's figures on an idle machine, in one go (about 4 minutes on 2 idle cores; the steps' timeouts add up to 6),
# appended as a dated block to benchmarks/RESULTS.md:
#   1. stage 2 --no_png (and PNGs) against the seed's original method (matplotlib JPG): 2,000 clips against 150
#      (bench_spectrograms.py), clips/s and the ratio (target >= 35x);
#   2. cnn3 CPU training, in-memory against the seed's per-item-decode loader (bench_training.py; target >= 5x), and
#      the step's options taking turns (ab_cnn3_step.py): 2 threads against 1, torch.compile, channels-last;
#   3. stage 2 across processes: one process against `torchrun --nproc_per_node 2` (bench_scale.py --extraction);
#   4. resnet18's training step (bench_training.py) and predict.py on 1,000 one-second files (bench_predict.py).
# Run it when nothing else runs (`cat /proc/loadavg` near 0); the block states the load before and after each step.
#
#   benchmarks/idle_check.sh            # the real sizes
#   benchmarks/idle_check.sh --small    # an end-to-end check of the script itself (~2-4 minutes; not figures;
#                                       # to runs/bench/idle_check_small.md, with 3 times the time limits)
#
# Python: $PYTHON, else .venv/bin/python (the Makefile's venv), else python3. JSON of every step: runs/bench/idle_check_*/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ "${1:-}" = "--small" ]; then
    # a test of the script, likely on a busy machine: 3 times the time limits
    SCALE=3 SIZE=small CLIPS=60 REF=12 TRAIN_STEPS=4 AB_ROUNDS=3 EXTRACT=24 FILES=50 RESULTS=${RESULTS:-runs/bench/idle_check_small.md}
else
    SCALE=1 SIZE=full CLIPS=2000 REF=150 TRAIN_STEPS=40 AB_ROUNDS=10 EXTRACT=480 FILES=1000 RESULTS=${RESULTS:-benchmarks/RESULTS.md}
fi
OUT=runs/bench/idle_check_$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
START=$(date -u "+%Y-%m-%d %H:%M")
load() { cut -d' ' -f1 /proc/loadavg; }
step() {  # step NAME SECONDS COMMAND...: run, log, record the load before and after and the wall time
    local name=$1 limit=$(( $2 * SCALE )); shift 2
    local before t0 rc=0
    before=$(load); t0=$(date +%s)
    echo "== $name (load $before, at most ${limit} s): $*"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1 || rc=$?
    echo "{\"load_before\": $before, \"load_after\": $(load), \"seconds\": $(( $(date +%s) - t0 )), \"rc\": $rc}" > "$OUT/$name.step.json"
    tail -n 4 "$OUT/$name.log"
    [ "$rc" = 0 ] || echo "   (exit status $rc: see $OUT/$name.log)"
}
echo "idle check ($SIZE), $START UTC, load $(cat /proc/loadavg), python $PY"
export PYTHONUNBUFFERED=1
step spectrograms 140 "$PY" benchmarks/bench_spectrograms.py --clips "$CLIPS" --reference_clips "$REF" \
    --json "$OUT/spectrograms.json"
step training 55 "$PY" benchmarks/bench_training.py --models cnn3 --reference_models cnn3 --steps "$TRAIN_STEPS" \
    --json "$OUT/training.json"
step threads 50 "$PY" benchmarks/ab_cnn3_step.py --variants base threads1 compile channels_last --threads 2 \
    --rounds "$AB_ROUNDS" --json "$OUT/threads.json"
step extraction 55 "$PY" benchmarks/bench_scale.py --extraction --clips "$EXTRACT" --processes 1 2
cp runs/bench/bench_scale_extraction.json "$OUT/extraction.json" 2>/dev/null || true
step resnet18 30 "$PY" benchmarks/bench_training.py --models resnet18 --reference_models none --steps 3 \
    --json "$OUT/resnet18.json"
step predict 30 "$PY" benchmarks/bench_predict.py --files "$FILES" --repeats 1 --json "$OUT/predict.json"
"$PY" - "$OUT" "$START" "$SIZE" "$RESULTS" <<'EOF'
"""Format the step's JSON as one markdown block and append it to the results file."""
import json
import os
import platform
import subprocess
import sys

out, start, size, results = sys.argv[1:]


def read(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.isfile(path) else None


def load(name):
    s = read(f"{name}.step.json") or {}
    failed = f", **failed (exit {s['rc']})**" if s.get("rc") else ""
    return f"load {s.get('load_before', '?')} → {s.get('load_after', '?')}, {s.get('seconds', '?')} s{failed}"


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"
lines = [f"\n## Idle-machine check ({start} UTC, `benchmarks/idle_check.sh`{' --small: a test of the script, not figures' if size == 'small' else ''})\n",
         f"Commit {commit}, {cpu_model()}, {os.cpu_count()} cores; the 1-minute load before and after each step is "
         f"beside it (near 0 before each step: an idle machine; the benchmark itself adds 1-2). JSON: `{out}/`.\n",
         "| figure | value | conditions |", "| --- | --- | --- |"]
spec = read("spectrograms.json")
if spec:
    runs, ref = spec["runs"], spec["runs"].get("seed method (matplotlib JPG), 1 process")
    for name, r in runs.items():
        lines.append(f"| {name}, {r['clips']:,} clips | {r['clips_per_second']:.1f} clips/s "
                     f"({1000 * r['cpu_seconds'] / r['clips']:.2f} CPU ms/clip) | {load('spectrograms')} |")
    if ref:
        lines.append(f"| **stage 2 --no_png (2 workers) / seed method** | **{spec['no_png_speedup']:.1f}×** (target ≥ 35×: "
                     f"{'met' if spec['no_png_speedup'] >= 35 else 'missed'}); PNGs: {spec['speedup']:.1f}× | |")
train = read("training.json")
if train:
    for r in train["models"]:
        ref = r.get("reference_images_per_s")
        lines.append(f"| {r['model']} training, in-memory / per-item-decode loader | {r['images_per_s']:.0f} / "
                     f"{ref or float('nan'):.0f} images/s = **{r.get('speedup', float('nan')):.1f}×** (target ≥ 5×); "
                     f"a batch of 64: {1000 * 64 / r['images_per_s']:.0f} ms in memory, the loader alone "
                     f"{r.get('reference_loader_ms_per_batch', float('nan')):.0f} ms | {load('training')} |")
threads = read("threads.json")
if threads:
    rows = {r["variant"]: r for r in threads["rows"]}
    base = rows.pop("base")
    lines.append(f"| cnn3 step, batch 64, {base['threads']} threads (the A/B's baseline) | {base['median_ms']:.0f} ms | "
                 f"{load('threads')} |")
    for name, r in rows.items():
        setting = name if name == "threads1" else f"{name}, {r['threads']} threads"
        agreement = "bit-identical" if r["bit_identical"] else f"losses within {r['max_loss_diff']:.1e}"
        lines.append(f"| cnn3 step, {setting} | {r['median_ms']:.0f} ms: **{r['ratio_to_base']:.2f}×** the baseline's "
                     f"time (median per round); {agreement} | |")
extraction = read("extraction.json")
if extraction and read("extraction.step.json") and not read("extraction.step.json")["rc"]:
    by = {r["processes"]: r for r in extraction}
    for n, r in sorted(by.items()):
        lines.append(f"| stage 2 --no_png end to end, {n} process{'es (torchrun)' if n > 1 else ''}, {r['clips']} clips | "
                     f"{r['clips_per_s']:.1f} clips/s ({r['seconds']:.1f} s) | load {r['load_before']:.1f} → {r['load_after']:.1f} |")
    if 1 in by and 2 in by:
        lines.append(f"| 2 processes / 1 | {by[2]['clips_per_s'] / by[1]['clips_per_s']:.2f}× | |")
resnet = read("resnet18.json")
if resnet:
    r = resnet["models"][0]
    lines.append(f"| resnet18 training from scratch, in-memory, batch 64 | {r['images_per_s']:.1f} images/s "
                 f"({64 / r['images_per_s']:.2f} s a step) | {load('resnet18')} |")
predict = read("predict.json")
if predict:
    lines.append(f"| predict.py, {predict['files']:,} one-second files, --workers {predict['workers']}, end to end | "
                 f"{predict['files_per_second']:.0f} files/s ({predict['seconds'][0]:.1f} s) | {load('predict')} |")
for name in ("spectrograms", "training", "threads", "extraction", "resnet18", "predict"):
    s = read(f"{name}.step.json")
    if s and s["rc"]:
        lines.append(f"| step `{name}` | **failed** (exit {s['rc']}{': timed out' if s['rc'] == 124 else ''}): "
                     f"`{out}/{name}.log` | {load(name)} |")
busiest = max((read(f"{n}.step.json") or {}).get("load_before", 0) for n in
              ("spectrograms", "training", "threads", "extraction", "resnet18", "predict"))
if busiest > 1.0:
    lines.append(f"\n**The machine was not idle**: a 1-minute load of up to {busiest} before a step; these figures were "
                 f"measured under that load.")
block = "\n".join(lines) + "\n"
os.makedirs(os.path.dirname(results) or ".", exist_ok=True)
with open(results, "a") as f:
    f.write(block)
print(block)
print(f"appended to {results}")
EOF
