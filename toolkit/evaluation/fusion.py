"""Fusion of trained models of one category (e.g. eGeMAPS mlp + mel cnn3 + a speech-encoder head): the weighted mean
of their calibrated probabilities, scored and reported like any single model. The one implementation predict.py,
evaluate.py and fused cross-validation (toolkit/training/crossval.py) use.

Weights are equal unless given, or chosen on held-out labelled clips (a validation split): the point of a 0.1 grid
over the simplex with the lowest log loss (ties: the earlier point; equal weights are tried first).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from toolkit.errors import ToolkitError

FUSED = "fused"  # the name a fusion is reported under
GRID = 10  # weight steps of 1/GRID


def check_fusable(names: Sequence[str], cards: Sequence) -> None:
    """Members must classify one category into the same classes in the same order (one-line error otherwise)."""
    first = cards[0]
    for name, card in zip(names[1:], cards[1:]):
        if card.category != first.category:
            raise ToolkitError(f"{name}: classifies {card.category}, {names[0]} {first.category}; fuse models of one category")
        if list(card.classes) != list(first.classes):
            raise ToolkitError(f"{name}: classes {card.classes} differ from {names[0]}'s {first.classes}; fuse models "
                               f"trained on the same classes")


def parse_weights(text: str, members: int) -> list[float]:
    """'2,1,1' -> [2.0, 1.0, 1.0]: one non-negative weight per member, not all zero."""
    try:
        weights = [float(w) for w in str(text).split(",")]
    except ValueError:
        raise ToolkitError(f"--fuse_weights {text!r}: not numbers; give one weight per model, e.g. 2,1")
    if len(weights) != members or any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ToolkitError(f"--fuse_weights {text}: needs {members} non-negative numbers (one per model, not all 0)")
    return weights


def fuse(probabilities: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """The weighted mean of members' (N, classes) calibrated probabilities (weights normalised to sum 1). One
    member's fusion is that member, exactly."""
    if not probabilities:
        raise ToolkitError("nothing to fuse: give at least one model")
    shapes = {np.shape(p) for p in probabilities}
    if len(shapes) != 1:
        raise ToolkitError(f"fusion members scored different clips or classes (shapes {sorted(shapes)}); score them on the same data")
    w = np.ones(len(probabilities)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    if len(probabilities) == 1:
        return np.array(probabilities[0], copy=True)
    fused = sum(wi * np.asarray(p, dtype=np.float64) for wi, p in zip(w, probabilities))
    return fused.astype(np.asarray(probabilities[0]).dtype)


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    picked = np.asarray(probabilities, np.float64)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.mean(np.log(np.maximum(picked, 1e-12))))


def choose_weights(probabilities: Sequence[np.ndarray], labels: np.ndarray, grid: int = GRID) -> list[float]:
    """The weights (on a 1/grid simplex grid) whose fusion has the lowest log loss on these labelled clips."""
    members = len(probabilities)
    best = [1.0 / members] * members
    best_loss = log_loss(fuse(probabilities, best), labels)
    for split in itertools.product(range(grid + 1), repeat=members - 1):
        if sum(split) > grid:
            continue
        weights = [s / grid for s in split] + [(grid - sum(split)) / grid]
        loss = log_loss(fuse(probabilities, weights), labels)
        if loss < best_loss - 1e-12:
            best, best_loss = weights, loss
    return best
