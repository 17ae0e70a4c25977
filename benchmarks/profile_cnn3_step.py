"""What one cnn3 training step spends its time on (torch.profiler, CPU): batch 64 of 3×128×128 inputs, as stage 3
feeds them, through the engine's own training step. Prints the operators by self CPU time.

    python3 benchmarks/profile_cnn3_step.py --threads 2 --steps 5
    python3 benchmarks/profile_cnn3_step.py --precision bf16 --channels_last   # bf16 autocast (where native), NHWC
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import build_model  # noqa: E402
from toolkit import precision  # noqa: E402
from toolkit.training.engine import make_optimizer, train_batches  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--rows", type=int, default=15)
    p.add_argument("--precision", choices=["auto", "bf16"], default="auto", help="as the training scripts' --precision")
    p.add_argument("--force_bf16", action="store_true", help="bf16 autocast even without native bf16 (emulated)")
    p.add_argument("--channels_last", action="store_true", help="model and inputs in channels-last (NHWC) layout")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bf16 = precision.use(args.precision, True if args.force_bf16 else None)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    model = build_model("cnn3", 2).to(memory_format=layout)
    optimizer = make_optimizer(model, 1e-3, 0.0)
    device = torch.device("cpu")
    x = torch.randint(0, 256, (args.batch_size, 1, 128, 128), dtype=torch.uint8)
    batch = [(x.float().div_(255).expand(-1, 3, -1, -1).contiguous(memory_format=layout),
              torch.randint(0, 2, (args.batch_size,)))]
    for _ in range(3):  # warm-up: first-call allocations and kernel choices
        train_batches(model, optimizer, batch, device)
    t0 = time.perf_counter()
    for _ in range(args.steps):  # unprofiled: the profiler's own overhead is not in the step time
        train_batches(model, optimizer, batch, device)
    step_ms = (time.perf_counter() - t0) / args.steps * 1000
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            train_batches(model, optimizer, batch, device)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
    print(f"{args.steps} steps, batch {args.batch_size}, {args.threads} threads, bf16 autocast {bf16} (native CPU bf16: "
          f"{precision.cpu_bf16_supported()}), {'channels-last' if args.channels_last else 'contiguous'}: "
          f"{step_ms:.1f} ms a step, load average {os.getloadavg()[0]:.2f}")
    print(table)


if __name__ == "__main__":
    main()
