"""Fine-tuning throughput of a speech encoder through the toolkit's own training step: clips/s and peak memory.

The network is train_wav2vec2.py's (models/speech.py) with random weights from a config, so nothing is downloaded:
by default wav2vec2-base's architecture (transformers' Wav2Vec2Config(): 12 layers × 768, 95 M parameters) at
batch 8 × 4 s, bf16 autocast on a CUDA GPU (full precision on a CPU), the batches drawn from an in-memory split as
in training (random crops, toolkit.training.engine.train_one_epoch).

    python3 benchmarks/bench_wav2vec2.py --device cuda                     # the issue's GPU figure
    python3 benchmarks/bench_wav2vec2.py --small --steps 3                 # a CPU smoke run (2 layers × 32)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from demo.encoder import demo_config  # noqa: E402
from models.speech import build_speech_classifier  # noqa: E402
from toolkit.cli import pick_device  # noqa: E402
from toolkit.config import FINETUNE  # noqa: E402
from toolkit.features.encoders import EncoderInfo  # noqa: E402
from toolkit.features.waveform import Waveform, WaveformParams  # noqa: E402
from toolkit.fileio import write_json  # noqa: E402
from toolkit.training.data import make_feature_set  # noqa: E402
from toolkit.training.engine import make_optimizer, train_one_epoch  # noqa: E402

SR = 16000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8, help="clips per step (default: 8)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of every clip (default: 4.0)")
    p.add_argument("--steps", type=int, default=30, help="timed steps (default: 30)")
    p.add_argument("--warmup_steps", type=int, default=3, help="untimed steps first (default: 3)")
    p.add_argument("--small", action="store_true", help="a 2-layer × 32 encoder instead of wav2vec2-base's size")
    p.add_argument("--gradient_checkpointing", action="store_true")
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--out", default="runs/bench/wav2vec2.json", help="results as JSON (default: runs/bench/wav2vec2.json)")
    args = p.parse_args()
    device = pick_device(args.device, args.threads)
    torch.manual_seed(0)
    from transformers import Wav2Vec2Config

    config = demo_config() if args.small else Wav2Vec2Config()
    info = EncoderInfo(source="random init", config=config.to_dict(), sr=SR, normalize=True, attention_mask=False)
    model = build_speech_classifier(6, {**asdict(info), "window": round(args.seconds * SR)}).to(device)
    if args.gradient_checkpointing:
        model.encoder.gradient_checkpointing_enable()
    rng = np.random.default_rng(0)

    def split(steps: int):
        """steps × batch random clips of the given length, held as training holds a split."""
        n = steps * args.batch
        waves = list(rng.standard_normal((n, round(args.seconds * SR))).astype(np.float32))
        return make_feature_set(Waveform(WaveformParams(sr=SR)), waves, pd.DataFrame(index=range(n)), {"max_seconds": args.seconds},
                                labels=[i % 6 for i in range(n)], params={"sr": SR})

    optimizer = make_optimizer(model, FINETUNE.learning_rate, FINETUNE.weight_decay)
    generator = torch.Generator().manual_seed(0)
    train_one_epoch(model, split(args.warmup_steps), optimizer, args.batch, device, generator)  # allocator, autotuning
    timed = split(args.steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    train_one_epoch(model, timed, optimizer, args.batch, device, generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "encoder": "2 layers × 32" if args.small else "wav2vec2-base size (12 × 768)",
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "batch": args.batch, "seconds_per_clip": args.seconds, "steps": args.steps,
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "gradient_checkpointing": args.gradient_checkpointing,
        "clips_per_s": round(args.batch * args.steps / seconds, 2),
        "peak_memory_GiB": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        "torch": torch.__version__,
    }
    for k, v in result.items():
        print(f"{k:24s} {v}")
    write_json(result, args.out)


if __name__ == "__main__":
    main()
