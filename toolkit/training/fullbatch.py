"""Full-batch L-BFGS for the vector heads (`--optimizer lbfgs`, the `vector` recipe): the optimum of an L2-regularised
objective, fitted the way scikit-learn's LogisticRegression and MLPClassifier(solver='lbfgs') fit it.

The objective is scikit-learn's divided by C·n (n training items): the (class-weighted) mean cross entropy of the
whole training split plus ||W||² / (2·C·n) over the weight matrices (biases and LayerSum's layer weights are not
penalised), so C means what it means in scikit-learn (up to the factor 2 between a 2-class softmax and a logistic
regression). One epoch of the engine's train_loop is one value of config.C (a tuple; the epochs are as many), each
fitted from the same initial weights and scored on validation, so the loop's model selection (select_by, patience)
chooses C. (A warm start from the previous C would be faster, but an MLP squeezed to zero by a strong penalty stays
at that saddle point.) Dropout is off while fitting: L-BFGS needs one deterministic objective, and L2 regularises.
Nothing is random, so --resume (which continues after the last finished C) ends exactly where an uninterrupted run
does, and a single C refits the model a search chose.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.errors import ToolkitError
from toolkit.training import distributed
from toolkit.training.data import FeatureSet, batches

MAX_ITERATIONS = 200  # L-BFGS iterations per C (scikit-learn: 100 for LogisticRegression, 200 for MLPClassifier)
CHUNK = 8192  # rows per forward pass: the full batch in pieces, so a large split does not need its activations at once
CACHE_BYTES = 2 ** 30  # a training split's inputs up to this size are made once and kept (else re-read every pass)


def check_config(config, kind: str, source: str) -> None:
    """A one-line error for settings L-BFGS cannot honour (before anything is loaded or written)."""
    if config.optimizer != "lbfgs":
        return
    if kind != "vector":
        raise ToolkitError(f"{source}: --optimizer lbfgs fits the vector heads (linear, mlp) on vector features; "
                           f"these are {kind} features: use --optimizer adamw")
    if config.mixup:
        raise ToolkitError("--mixup with --optimizer lbfgs: a full-batch fit has one fixed objective, mixup draws new "
                           "mixtures every batch; drop --mixup or use --optimizer adamw")
    if distributed.launched():
        raise ToolkitError("--optimizer lbfgs under torchrun is not supported: a full-batch fit of a vector head runs "
                           "in one process (it takes seconds); run it without torchrun")


def make_lbfgs(model: nn.Module) -> torch.optim.LBFGS:
    """L-BFGS with a strong-Wolfe line search (step size 1 tried first, so no learning rate to choose)."""
    return torch.optim.LBFGS([p for p in model.parameters() if p.requires_grad], lr=1.0, max_iter=MAX_ITERATIONS,
                             history_size=20, tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")


def penalised(model: nn.Module) -> list[torch.Tensor]:
    """The weight matrices (ndim >= 2) that the L2 term covers; biases and per-layer mixing weights are free."""
    return [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]


def full_batch_step(model: nn.Module, data: FeatureSet, config, device: torch.device, class_weights: torch.Tensor | None):
    """The train_loop step of a full-batch fit of `model`: L-BFGS to convergence (or MAX_ITERATIONS) at this
    epoch's C, from the weights `model` has now (its initial ones)."""
    path = list(config.C)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    labels = data.labels.cpu()
    weight = None if class_weights is None else class_weights.to(device)
    total_weight = float(len(labels) if class_weights is None else class_weights.cpu()[labels].sum())
    size = len(data) * math.prod(data.input_shape()) * 4
    cached = list(batches(data, CHUNK, device)) if size <= CACHE_BYTES else None

    def data_loss(net: nn.Module) -> torch.Tensor:
        """The (class-weighted) mean cross entropy over the whole split, gradients accumulated when enabled."""
        total = torch.zeros((), device=device)
        for x, y in cached or batches(data, CHUNK, device):
            loss = F.cross_entropy(net(x).float(), y, weight=weight, reduction="sum") / total_weight
            if torch.is_grad_enabled():
                loss.backward()
            total += loss.detach()
        return total

    def step(net: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, generator: torch.Generator) -> dict:
        c = path[min(epoch, len(path)) - 1]
        model.load_state_dict(start)
        scale = 1.0 / (2 * c * len(labels))
        optimizer.state.clear()  # a new C is a new objective: no curvature pairs from the last one
        net.eval()  # dropout off: one deterministic objective

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = data_loss(net)
            penalty = scale * sum((p ** 2).sum() for p in penalised(net))
            penalty.backward()
            return loss + penalty.detach()

        optimizer.step(closure)
        iterations = optimizer.state[optimizer.param_groups[0]["params"][0]].get("n_iter", 0)
        with torch.no_grad():
            return {"train_loss": float(data_loss(net)), "C": c, "iterations": int(iterations)}

    return step


def fitted(history: list[dict], best_epoch: int, n: int) -> dict:
    """What the run card records of a full-batch fit: the chosen C (and its L2 weight on the mean loss), every C
    tried with its validation loss, the L-BFGS iterations."""
    best = history[best_epoch - 1]
    return {"optimizer": "lbfgs", "C": best["C"], "l2": 1.0 / (2 * best["C"] * n), "iterations": best["iterations"],
            "max_iterations": MAX_ITERATIONS,
            "tried": [{"C": h["C"], "val_loss": h.get("val_loss"), "val_f1": h.get("val_f1")} for h in history]}
