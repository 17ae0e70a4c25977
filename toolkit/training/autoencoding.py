"""Stage 4 shared by its three scripts: the autoencoder's files, its task on the engine (Reconstruction), and its plots."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.evaluation.plots import save_figure
from toolkit.features import clip_of
from toolkit.training.autoencoder_files import DECODER_FILE, ENCODER_FILE, STEM  # noqa: F401 (public here too)
from toolkit.training.batch import Batch
from toolkit.training.data import FeatureSet, batches
from toolkit.training.tasks import Task

GRID_IMAGES = 8  # the first images of the CSV, so the grids of training and of testing show the same clips


class Reconstruction(Task):
    """The autoencoder's objective: the per-pixel MSE between each input and its reconstruction (no labels)."""

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.mse_loss(model(batch.x).float(), batch.x)


@torch.no_grad()
def reconstruction_loss(model: nn.Module, data: FeatureSet, batch_size: int, device: torch.device) -> float:
    """Eval-mode per-pixel MSE over all of `data`.

    Full precision (no autocast), a float64 sum in CSV order and, on a GPU, the same deterministic cuDNN
    kernels in every process (no benchmark-picked ones), so reloading the saved weights reproduces the number
    training wrote far inside testing_autoencoder.py's 1e-5 tolerance.
    """
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        for x, _ in batches(data, batch_size, device):
            total += F.mse_loss(model(x), x, reduction="sum").double()
            count += x.numel()
    return float(total) / count


@torch.no_grad()
def plot_reconstructions(model: nn.Module, data: FeatureSet, device: torch.device, path: str, title: str = "") -> None:
    """Inputs (top row) above their eval-mode reconstructions (bottom row)."""
    model.eval()
    x = data.to_input(data.x[:GRID_IMAGES], device)
    out = model(x).float().mean(1).cpu()  # the 3 output channels all model the same grey image
    fig, axes = plt.subplots(2, len(x), figsize=(1.6 * len(x), 3.6), squeeze=False)
    for i in range(len(x)):
        for row, image in enumerate((x[i, 0].float().cpu().numpy(), out[i].numpy())):
            axes[row, i].imshow(image, cmap="magma", vmin=0, vmax=1)
            axes[row, i].set_xticks([])
            axes[row, i].set_yticks([])
        axes[0, i].set_title(clip_of(data.paths[i]), fontsize=6)
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("reconstruction")
    if len(x) > 1 and alike(out, x[:, 0].float().cpu()):  # said on the figure: identical pictures look like a bug
        title += ("\nthe reconstructions barely differ from clip to clip: the autoencoder has not learnt the inputs "
                  "yet (train longer: --epochs)")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def alike(out: torch.Tensor, inputs: torch.Tensor, ratio: float = 0.25) -> bool:
    """Whether the reconstructions vary across clips less than `ratio` times as much as the inputs do (an early
    autoencoder outputs about the mean image for every clip)."""
    return float(out.std(0).mean()) < ratio * float(inputs.std(0).mean())


def plot_loss_curve(history: list[dict], path: str, title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], marker=".")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # whole epochs, also for a 3-epoch run
    ax.set_ylabel("training MSE per pixel")
    ax.set_yscale("log")  # the loss falls by orders of magnitude early and then slowly
    ax.set_title(title)
    save_figure(fig, path)


def freeze(module: nn.Module) -> nn.Module:
    """Make `module` a fixed feature extractor: no gradients, and kept in eval mode even while the network
    around it trains, so its BatchNorm layers keep the pre-trained statistics instead of drifting."""
    module.requires_grad_(False)
    module.train = lambda mode=True: nn.Module.train(module, False)  # model.train() calls this on each child
    return module
