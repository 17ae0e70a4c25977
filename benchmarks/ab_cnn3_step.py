"""A/B of what might lower a cnn3 training step's floor on the CPU, taking turns in one process so that a shared
machine's load falls on every variant alike.

Each variant has its own cnn3 (the same initial weights), AdamW and a copy of the same batches (64 of 3×128×128, as
stage 3 feeds them); every round times one engine training step of each variant, in a shuffled order. Reported per
variant: the median step, the median of its per-round ratio to the baseline (the load-robust figure), and how far
its training losses (the first step's: the forward pass alone; the largest over the steps) and its weights are from
the baseline's after the same steps (0 and "bit-identical": the same numbers). AdamW moves a weight whose gradient is
near 0 by up to the learning rate a step whatever the gradient's last digits, so |dw| grows to ~steps × 1e-3 as soon
as any digit differs: the losses are the measure of agreement.

    python3 benchmarks/ab_cnn3_step.py --rounds 20                      # all variants, 2 threads for the baseline
    python3 benchmarks/ab_cnn3_step.py --variants base threads1 compile --rounds 30

Variants: base (float32, contiguous, AdamW's per-parameter loop, --threads), threads1 (one thread), channels_last,
fused_adamw (AdamW(fused=True): one kernel for every parameter), foreach_adamw, compile (torch.compile of the network,
inductor: needs a C++ compiler; compile time is left out: it happens in the warm-up), compile_channels_last
(both), mkldnn_off (torch.backends.mkldnn disabled: PyTorch's own convolutions), flush_denormal
(torch.set_flush_denormal: denormal floats computed as 0).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from contextlib import nullcontext

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import build_model  # noqa: E402
from toolkit.training.engine import CompiledOrEager, make_optimizer, train_batches  # noqa: E402

VARIANTS = ("base", "threads1", "channels_last", "fused_adamw", "foreach_adamw", "compile", "compile_channels_last", "mkldnn_off",
            "flush_denormal")


class Variant:
    def __init__(self, name: str, threads: int, batches: list) -> None:
        self.name, self.times = name, []
        self.threads = 1 if name == "threads1" else threads
        torch.manual_seed(0)
        layout = torch.channels_last if name.endswith("channels_last") else torch.contiguous_format
        self.model = build_model("cnn3", 2).to(memory_format=layout)
        if name in ("fused_adamw", "foreach_adamw"):
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.0, **{name.split("_")[0]: True})
        else:
            self.optimizer = make_optimizer(self.model, 1e-3, 0.0)
        self.net = CompiledOrEager(self.model) if name.startswith("compile") else self.model
        self.batches = [(x.contiguous(memory_format=layout), y) for x, y in batches]
        self.step_count, self.losses = 0, []

    def step(self) -> float:
        torch.set_num_threads(self.threads)
        batch = self.batches[self.step_count % len(self.batches)]
        context = torch.backends.mkldnn.flags(enabled=False) if self.name == "mkldnn_off" else nullcontext()
        torch.set_flush_denormal(self.name == "flush_denormal")
        t0 = time.perf_counter()
        with context:
            loss = train_batches(self.net, self.optimizer, [batch], torch.device("cpu"))
        self.losses.append(loss)
        self.step_count += 1
        return (time.perf_counter() - t0) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--threads", type=int, default=2, help="threads of every variant but threads1")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first (compiling happens here)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    names = ["base", *[v for v in args.variants if v != "base"]]
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randint(0, 256, (args.batch_size, 1, 128, 128), dtype=torch.uint8, generator=g)
                .float().div_(255).expand(-1, 3, -1, -1).contiguous(),
                torch.randint(0, 2, (args.batch_size,), generator=g)) for _ in range(4)]
    load = [os.getloadavg()[0]]
    variants = [Variant(n, args.threads, batches) for n in names]
    for v in variants:
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            v.step()
        print(f"{v.name}: warm-up {time.perf_counter() - t0:.1f} s", flush=True)
    order = random.Random(0)
    for r in range(args.rounds):
        for v in order.sample(variants, len(variants)):
            v.times.append(v.step())
        load.append(os.getloadavg()[0])
    base = variants[0]
    rows = []
    for v in variants:
        diff = max((a - b).abs().max().item() for a, b in zip(v.model.state_dict().values(), base.model.state_dict().values())
                   if a.is_floating_point())
        same = all(torch.equal(a, b) for a, b in zip(v.model.state_dict().values(), base.model.state_dict().values()))
        rows.append({"variant": v.name, "threads": v.threads, "median_ms": statistics.median(v.times),
                     "min_ms": min(v.times), "ratio_to_base": statistics.median(t / b for t, b in zip(v.times, base.times)),
                     "max_weight_diff": diff, "first_loss_diff": abs(v.losses[0] - base.losses[0]),
                     "max_loss_diff": max(abs(a - b) for a, b in zip(v.losses, base.losses)), "bit_identical": same})
    print(f"{args.rounds} rounds, batch {args.batch_size}, {args.warmup + args.rounds} steps each; 1-minute load "
          f"{min(load):.2f}-{max(load):.2f}; torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'variant':14s} {'thr':>3s} {'median ms':>10s} {'min ms':>8s} {'vs base':>8s} {'max |dw|':>10s} "
          f"{'|dloss| 1st':>11s} {'max |dloss|':>11s} identical")
    for r in rows:
        print(f"{r['variant']:14s} {r['threads']:3d} {r['median_ms']:10.1f} {r['min_ms']:8.1f} {r['ratio_to_base']:8.3f} "
              f"{r['max_weight_diff']:10.2e} {r['first_loss_diff']:11.2e} {r['max_loss_diff']:11.2e} {r['bit_identical']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "load": [min(load), max(load)], "rounds": args.rounds}, f, indent=1)


if __name__ == "__main__":
    main()
