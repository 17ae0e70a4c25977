"""Plots people look at instead of reading numbers: confusion matrix, training curves, spectrograms."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np

from .fileio import atomic_path


def _save(fig: plt.Figure, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_confusion_matrix(matrix: list[list[int]], classes: list[str], path: str, title: str = "") -> None:
    m = np.asarray(matrix)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = 2.2 + 0.7 * len(classes)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{m[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    _save(fig, path)


def plot_training_curves(history: list[dict], path: str, title: str = "") -> None:
    """Loss (train and val) and validation accuracy/F1 per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        if any(key in h for h in history):
            ax_loss.plot(epochs, [h.get(key, np.nan) for h in history], marker=".", label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    for key in ("val_accuracy", "val_f1", "val_uar"):
        if any(key in h for h in history):
            ax_score.plot(epochs, [h.get(key, np.nan) for h in history], marker=".", label=key.removeprefix("val_"))
    ax_score.set_xlabel("epoch")
    ax_score.set_ylabel("validation score")
    ax_score.set_ylim(0, 1)
    ax_score.legend()
    fig.suptitle(title)
    _save(fig, path)


def plot_spectrogram(image: np.ndarray, path: str, title: str = "", hop_seconds: float | None = None) -> None:
    """A stored spectrogram image (low frequencies at the bottom) with a time axis in seconds when known."""
    fig, ax = plt.subplots(figsize=(6, 3))
    extent = None
    if hop_seconds:
        extent = (0, image.shape[1] * hop_seconds, 0, image.shape[0])
    ax.imshow(image, cmap="magma", aspect="auto", extent=extent)
    ax.set_xlabel("time (s)" if hop_seconds else "frame")
    ax.set_ylabel("mel band")
    ax.set_title(title)
    _save(fig, path)
