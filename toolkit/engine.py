"""The one training loop: train_one_epoch, evaluate, and fit (best epoch by validation F1, then the test set)."""
from __future__ import annotations

import copy
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import ImageSet, batches, move_to_device, to_input
from .errors import ToolkitError
from .fileio import write_csv, write_json, write_torch
from .metrics import classification_metrics, format_confusion, format_metrics
from .plots import plot_confusion_matrix, plot_training_curves


def autocast(device: torch.device):
    """bf16 mixed precision on CUDA (no loss scaling needed); full precision on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def train_one_epoch(
    model: nn.Module, data: ImageSet, optimizer: torch.optim.Optimizer, batch_size: int,
    device: torch.device, generator: torch.Generator,
) -> float:
    """One pass over `data` in a shuffled order; returns the mean training loss."""
    model.train()
    total, count = 0.0, 0
    for x, y in batches(data, batch_size, device, generator):
        with autocast(device):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach().float() * len(y)  # stays on the device: no sync per step
        count += len(y)
    return float(total) / max(count, 1)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Eval-mode logits (float32, CPU) for uint8 images (N,1,H,W)."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        with autocast(device):
            out.append(model(to_input(images[start : start + batch_size], device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def evaluate(model: nn.Module, data: ImageSet, batch_size: int, device: torch.device, num_classes: int) -> dict:
    """Loss and classification metrics of `model` on a labelled split (predictions kept for later use)."""
    logits = predict_logits(model, data.images, batch_size, device)
    labels = data.labels.cpu()
    metrics = classification_metrics(labels.numpy(), logits.argmax(1).numpy(), num_classes)
    metrics["loss"] = float(F.cross_entropy(logits, labels))
    metrics["probabilities"] = torch.softmax(logits, 1).numpy()
    return metrics


@dataclass
class RunFiles:
    """Where a training run writes: {folder}/{stem}.pt, .json, _metrics.csv/json, _last.pt and the plots."""

    folder: str
    stem: str

    def path(self, suffix: str) -> str:
        return os.path.join(self.folder, self.stem + suffix)

    @property
    def weights(self) -> str:
        return self.path(".pt")

    @property
    def sidecar(self) -> str:
        return self.path(".json")

    @property
    def last(self) -> str:
        return self.path("_last.pt")


def public(metrics: dict) -> dict:
    """Metrics without the per-item arrays, for JSON and printing."""
    return {k: v for k, v in metrics.items() if k != "probabilities"}


def make_optimizer(model: nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=weight_decay)


TrainStep = Callable[[nn.Module, torch.optim.Optimizer, int], float]


def fit(
    model: nn.Module, train: ImageSet, val: ImageSet, test: ImageSet, classes: list[str], args, run: RunFiles,
    meta: dict, device: torch.device, train_step: TrainStep | None = None,
) -> dict:
    """Train for args.epochs, keep the best epoch by validation weighted F1 (ties: the later), score it on test.

    Writes the best state dict and its JSON sidecar after every improvement, a resumable `_last.pt` after every
    epoch, and at the end the metrics (CSV/JSON), the confusion matrix and the training curves.
    """
    os.makedirs(run.folder, exist_ok=True)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    for split in (train, val, test):
        move_to_device(split, device)
    optimizer = make_optimizer(model, args.learning_rate, args.weight_decay)
    generator = torch.Generator().manual_seed(args.seed)
    if train_step is None:
        def train_step(model, optimizer, epoch):
            return train_one_epoch(model, train, optimizer, args.batch_size, device, generator)

    history: list[dict] = []
    best_f1, best_epoch, best_state, start_epoch = -1.0, 0, None, 1
    if getattr(args, "resume", False) and os.path.isfile(run.last):
        state = torch.load(run.last, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError:
            raise ToolkitError(f"{run.last}: saved by a different model or class count; delete it or drop --resume")
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, best_f1, best_epoch = state["history"], state["best_f1"], state["best_epoch"]
        best_state = state["best_model"]
        start_epoch = state["epoch"] + 1
        print(f"resuming {run.last} after epoch {state['epoch']} (best epoch {best_epoch}, val F1 {best_f1:.4f})")

    num_classes = len(classes)
    started = time.time() - sum(h["seconds"] for h in history)
    bar = tqdm(range(start_epoch, args.epochs + 1), desc=f"training {run.stem}", unit="epoch", initial=start_epoch - 1, total=args.epochs)
    for epoch in bar:
        t0 = time.time()
        train_loss = train_step(model, optimizer, epoch)
        val_metrics = evaluate(model, val, args.batch_size, device, num_classes)
        row = {"epoch": epoch, "train_loss": train_loss, **{f"val_{k}": v for k, v in public(val_metrics).items() if k != "confusion_matrix"},
               "seconds": time.time() - t0}
        history.append(row)
        improved = val_metrics["f1"] >= best_f1
        if improved:
            best_f1, best_epoch = val_metrics["f1"], epoch
            best_state = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
            write_torch(best_state, run.weights)
            write_json({**meta, "epoch": epoch, "val": public(val_metrics)}, run.sidecar)
        write_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                     "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "history": history,
                     "best_f1": best_f1, "best_epoch": best_epoch, "best_model": best_state}, run.last)
        bar.write(f"epoch {epoch:3d}/{args.epochs} train_loss {train_loss:.4f} {format_metrics(val_metrics, 'val_')}"
                  f"{'  *best' if improved else ''}")

    model.load_state_dict(best_state)
    val_metrics = evaluate(model, val, args.batch_size, device, num_classes)
    test_metrics = evaluate(model, test, args.batch_size, device, num_classes)
    seconds = time.time() - started
    print(f"best epoch {best_epoch} (validation F1 {best_f1:.4f}); test set, {len(test)} clips:")
    print(f"  {format_metrics(test_metrics, 'test_')}")
    print(format_confusion(test_metrics["confusion_matrix"], classes))

    results = {**meta, "epoch": best_epoch, "seconds": seconds, "val": public(val_metrics), "test": public(test_metrics)}
    write_json(results, run.sidecar)
    write_json({**results, "history": history}, run.path("_metrics.json"))
    write_csv(pd.DataFrame(history), run.path("_metrics.csv"))
    write_test_predictions(test, test_metrics, classes, run.path("_test_predictions.csv"))
    plot_confusion_matrix(test_metrics["confusion_matrix"], classes, run.path("_confusion_matrix.png"),
                          f"{run.stem}: test F1 {test_metrics['f1']:.3f}")
    plot_training_curves(history, run.path("_training_curves.png"), run.stem)
    print(f"saved {run.weights} and its metrics and plots in {run.folder}")
    return results


def write_test_predictions(data: ImageSet, metrics: dict, classes: list[str], path: str) -> None:
    """Per-clip predictions, so per-speaker and per-class errors can be looked at."""
    probs = metrics["probabilities"]
    frame = data.frame.copy()
    frame["predicted"] = [classes[i] for i in np.argmax(probs, 1)]
    for i, c in enumerate(classes):
        frame[f"p_{c}"] = probs[:, i].round(6)
    write_csv(frame, path)
