"""Training throughput (images/s) and peak memory per model at 128×128, batch 64: in-memory data vs per-item decode.

Stage 3 decodes every image once into one uint8 tensor per split and batches by indexing it (on a GPU the tensor
lives on the device; inputs are bf16-autocast and channels_last). The reference loader is the seed's: a torch
DataLoader (num_workers 0) that opens, decodes and resizes an image file per item per step, here the seed's kind
of file (a 640×480 colour-mapped JPG, decoded with PIL). Both feed the same training step (toolkit.training.engine), side by
side in one run. Each model runs in a fresh process so its peak memory is its own.

    python3 benchmarks/bench_training.py                                    # CPU, few steps: minutes on 2 cores
    python3 benchmarks/bench_training.py --models cnn3 resnet18 --steps 40 --reference_models all
    python3 benchmarks/bench_training.py --device cuda --full_run           # on a GPU (add --compile to compare)
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from itertools import islice

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from toolkit.fileio import read_json, write_csv, write_json  # noqa: E402

from models import MODELS as REGISTRY  # noqa: E402

MODELS = [name for name, spec in REGISTRY.items() if spec.takes == "image"]
CPU_STEPS = {"cnn3": 24, "cnn9": 3, "frame_mlp": 24}  # the torchvision models take seconds per step on 2 cores: 2 steps each
CREMA_D_SPLIT = {"train": 5358, "val": 596, "test": 1488}  # 72/8/20 of 7,442 clips


def fake_spectrogram(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A 180-band uint8 image with speech-like structure (harmonic stripes, onsets); content barely matters here."""
    t = np.linspace(0, 1, frames)
    f = np.linspace(0, 1, 180)[:, None]
    pitch = rng.uniform(8, 20)
    image = 150 + 60 * np.sin(2 * np.pi * pitch * f + rng.uniform(0, 6)) * np.sin(np.pi * t * rng.integers(2, 6)) ** 2
    image -= 120 * f + rng.normal(0, 12, (180, frames))
    return np.flipud(image.clip(0, 255)).astype(np.uint8)


def make_images(folder: str, n: int, seed: int = 0, jpg: bool = True) -> pd.DataFrame:
    """n PNGs as stage 2 writes them (+ the seed's 640×480 colour JPGs); a CSV frame with sex labels."""
    from matplotlib import colormaps
    from PIL import Image

    from toolkit.features.mel import save_png

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    viridis = (colormaps["viridis"](np.arange(256))[:, :3] * 255).astype(np.uint8)
    rows = []
    for i in range(n):
        image = fake_spectrogram(rng, int(rng.integers(40, 157)))  # 1.27-5.0 s clips: 40-157 frames
        png = os.path.join(folder, f"{i:05d}.png")
        save_png(image, png)
        if jpg:
            Image.fromarray(viridis[image]).resize((640, 480), Image.BILINEAR).save(png[:-4] + ".jpg", quality=75)
        rows.append({"Image_file_path": os.path.basename(png), "sex": ["Male", "Female"][i % 2]})
    return pd.DataFrame(rows)


class DecodeEveryStep:
    """The seed's loader: one image file opened, decoded, resized and scaled per item, every time it is used."""

    def __init__(self, paths: list[str], labels: list[int], size: int = 128) -> None:
        self.paths, self.labels, self.size = paths, labels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            x = np.asarray(im.convert("RGB").resize((self.size, self.size), Image.BILINEAR), dtype=np.float32) / 255
        return torch.from_numpy(x).permute(2, 0, 1).contiguous(), self.labels[i]  # CHW, as ToTensor makes it


def tiled(data, n: int):
    """The set repeated up to n items: a long timed run without decoding n distinct files."""
    from toolkit.training.data import subset

    return subset(data, np.arange(n) % len(data))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(name: str, opts: dict) -> dict:
    """One model in this (fresh) process: in-memory training as stage 3 does it, then the reference loader if asked."""
    import torch

    from models import build_model
    from toolkit.cli import pick_device
    from toolkit.config import RECIPES
    from toolkit.training.data import batches, load_split, move_to_device
    from toolkit.training.engine import make_optimizer, train_batches, train_one_epoch

    from toolkit import precision

    device = pick_device(opts["device"], opts["threads"])
    cpu_bf16 = precision.use(opts["precision"], True if opts["force_bf16"] else None)
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    steps = opts["steps"] or (100 if cuda else CPU_STEPS.get(name, 2))
    warmup = opts["warmup"] if opts["warmup"] is not None else (10 if cuda else 1)
    bs = opts["batch_size"]
    recipe = RECIPES[opts["recipe"]]
    base = load_split(opts["csv"], "sex", recipe, desc="images")
    augment = base.feature.input.augmentation(recipe)
    warm, data = tiled(base, warmup * bs), tiled(base, steps * bs)
    rss_loaded = peak_rss_mb()
    model = build_model(name, 2).to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if opts["compile"] else model
    for split in (warm, data):
        move_to_device(split, device)
    optimizer = make_optimizer(model, 1e-3, 0.0)
    generator = torch.Generator().manual_seed(0)

    def timed(epoch) -> float:
        """images/s of epoch(images) after epoch(warm-up images)."""
        epoch(warmup)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        epoch(steps)
        if cuda:
            torch.cuda.synchronize()
        return steps * bs / (time.perf_counter() - t0)

    def in_memory(n_steps: int) -> None:  # exactly stage 3's epoch
        train_one_epoch(net, warm if n_steps == warmup else data, optimizer, bs, device, generator, augment=augment)

    result = {"model": name, "device": str(device), "recipe": opts["recipe"], "steps": steps, "batch_size": bs,
              "compile": opts["compile"], "cpu_bf16": cpu_bf16, "images_per_s": timed(in_memory),
              "split_bytes_per_image": base.x[0].numel() * base.x.element_size(),
              "peak_rss_mb": peak_rss_mb(), "rss_after_loading_mb": rss_loaded}
    if cuda:
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if name in opts["reference_models"]:
        from torch.utils.data import DataLoader

        reps = -(-(steps + warmup) * bs // len(base))
        jpgs, labels = [p[:-4] + ".jpg" for p in base.paths] * reps, base.labels.tolist() * reps
        loader = DataLoader(DecodeEveryStep(jpgs, labels), batch_size=bs, shuffle=True, num_workers=0)
        on_device = ((x.to(device), y.to(device)) for x, y in loader)
        result["reference_images_per_s"] = timed(lambda n: train_batches(net, optimizer, islice(on_device, n), device))
        result["speedup"] = result["images_per_s"] / result["reference_images_per_s"]
        # each loader alone, per batch: where the reference's time goes
        t0 = time.perf_counter()
        count = sum(1 for _ in islice(iter(loader), 3))
        result["reference_loader_ms_per_batch"] = (time.perf_counter() - t0) / count * 1000
    t0 = time.perf_counter()
    count = sum(1 for _ in islice(batches(data, bs, device, generator), 20))
    if cuda:
        torch.cuda.synchronize()
    result["in_memory_loader_ms_per_batch"] = (time.perf_counter() - t0) / count * 1000
    return result


def full_run(folder: str, frame: pd.DataFrame, opts: dict) -> dict:
    """train_cnn.py cnn3 for `epochs` on a CREMA-D-sized split, as a user runs it; wall time and fit's own time."""
    data = os.path.join(folder, "full")
    os.makedirs(data, exist_ok=True)
    start = 0
    for split, n in CREMA_D_SPLIT.items():  # the same images over again: loading is per file either way
        rows = frame.iloc[np.arange(start, start + n) % len(frame)]
        write_csv(rows.assign(Image_file_path=[os.path.join("..", "images", p) for p in rows["Image_file_path"]]),
                  os.path.join(data, f"sex_{split}.csv"))
        start += n
    cmd = [sys.executable, os.path.join(ROOT, "train_cnn.py"), "--csv_load_path", data, "--category", "sex",
           "--model", "cnn3", "--epochs", str(opts["full_run_epochs"]), "--batch_size", "64", "--recipe", opts["recipe"],
           "--model_save_path", os.path.join(folder, "models"), "--device", opts["device"]]
    if opts["threads"]:
        cmd += ["--threads", str(opts["threads"])]
    if opts["compile"]:
        cmd.append("--compile")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"train_cnn.py failed:\n{proc.stderr[-2000:]}")
    fit_seconds = read_json(os.path.join(folder, "models", "cnn3_sex.json"))["metrics"]["seconds"]
    return {"epochs": opts["full_run_epochs"], "train_images": CREMA_D_SPLIT["train"], "wall_seconds": wall,
            "fit_seconds": fit_seconds, "command": " ".join(cmd)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=MODELS, help=f"networks to time ({' '.join(MODELS)})")
    ap.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all cores)")
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None,
                    help=f"timed steps per model (default: 100 on CUDA; on CPU {CPU_STEPS}, 2 for the others)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 on CUDA, 1 on CPU)")
    ap.add_argument("--reference_models", nargs="+", default=["cnn3"],
                    help="models also timed with the per-item-decode loader ('all' for every model)")
    ap.add_argument("--files", type=int, default=256, help="distinct image files made (items repeat beyond them)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the networks (as train_cnn.py --compile)")
    ap.add_argument("--recipe", choices=["seed", "default"], default="seed",
                    help="'seed': stretched images, no augmentation (like the reference loader); 'default': stage 3's "
                         "default recipe (padded time axis, random windows, SpecAugment, gain)")
    ap.add_argument("--full_run", action="store_true",
                    help="also time train_cnn.py cnn3 on a CREMA-D-sized split (default on CUDA)")
    ap.add_argument("--full_run_epochs", type=int, default=30)
    ap.add_argument("--precision", choices=["auto", "bf16"], default="auto",
                    help="as the training scripts' --precision: 'bf16' autocasts CPU steps where the CPU has native bf16")
    ap.add_argument("--force_bf16", action="store_true",
                    help="with --precision bf16: autocast the CPU steps even without native bf16 (emulated: to measure it)")
    ap.add_argument("--json", default="runs/bench/training.json", help="figures as JSON (a CSV is written beside it)")
    args = ap.parse_args()
    import torch

    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    device = ("cuda" if cuda else "cpu") if args.device == "auto" else args.device
    reference = MODELS if args.reference_models == ["all"] else args.reference_models
    work = tempfile.mkdtemp(prefix="bench_training_")
    try:
        files = args.files if not args.full_run and not cuda else max(args.files, 1024)
        frame = make_images(os.path.join(work, "images"), files, jpg=bool(reference))
        csv = os.path.join(work, "images", "sex_train.csv")
        write_csv(frame, csv)
        opts = {"device": device, "threads": args.threads, "steps": args.steps, "warmup": args.warmup,
                "batch_size": args.batch_size, "compile": args.compile, "csv": csv, "recipe": args.recipe, "reference_models": reference,
                "full_run_epochs": args.full_run_epochs, "precision": args.precision, "force_bf16": args.force_bf16}
        load = os.getloadavg()[0]
        from toolkit.precision import cpu_bf16_supported

        print(f"device {device}, recipe {args.recipe}, {torch.get_num_threads() if args.threads is None else args.threads} CPU threads, "
              f"torch {torch.__version__}, load average {load:.2f}, --precision {args.precision}"
              f"{' (forced)' if args.force_bf16 else ''}, native CPU bf16: {cpu_bf16_supported()}")
        print(f"{'model':16s} {'steps':>5s} {'images/s':>9s} {'reference':>10s} {'ratio':>6s} {'peak MB':>8s} "
              f"{'ref load ms/batch':>17s}")
        rows = []
        ctx = mp.get_context("spawn")  # a fresh process per model: its peak memory is its own (and CUDA-safe)
        for name in args.models:
            with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                r = pool.submit(measure, name, opts).result()
            rows.append(r)
            peak = r.get("peak_cuda_mb", r["peak_rss_mb"])
            ref = r.get("reference_images_per_s")
            print(f"{name:16s} {r['steps']:5d} {r['images_per_s']:9.1f} {ref or float('nan'):10.1f} "
                  f"{r.get('speedup', float('nan')):6.1f} {peak:8.0f} {r.get('reference_loader_ms_per_batch', float('nan')):17.1f}",
                  flush=True)
        results = {"date": time.strftime("%Y-%m-%d %H:%M"), "loadavg_start": load, "loadavg_end": os.getloadavg()[0],
                   "torch": torch.__version__, "device": device, "models": rows}
        if cuda:
            results["gpu"] = torch.cuda.get_device_name()
        if args.full_run or cuda:
            results["full_run"] = f = full_run(work, frame, opts)
            print(f"train_cnn.py cnn3, {f['epochs']} epochs on {f['train_images']} training images: "
                  f"{f['wall_seconds']:.1f} s wall ({f['fit_seconds']:.1f} s training + evaluation)")
        memory = rows[0]["split_bytes_per_image"]
        print(f"in-memory split: {memory} bytes per image (uint8, 1×128×128; the budget is 3×128×128 = 49152)")
        if args.json:
            write_json(results, args.json)
            write_csv(pd.DataFrame(rows), os.path.splitext(args.json)[0] + ".csv")
            print(f"wrote {args.json}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
