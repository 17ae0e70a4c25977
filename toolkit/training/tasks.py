"""What the engine trains: a task makes an epoch's training batches and the objective of one batch (forward pass and
loss). The engine (engine.py) does everything else: optimiser steps, accumulation, mixed precision, schedules, DDP,
checkpoints, model selection and the callbacks. A new kind of training is one Task subclass:

    class Reconstruction(Task):
        def loss(self, model, batch):
            return F.mse_loss(model(batch.x), batch.x)

and `train_loop(model, config, run, device, Reconstruction(data, config.batch_size, device))`.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.training.batch import Batch, forward
from toolkit.training.data import FeatureSet, batch_iter, batches_per_epoch
from toolkit.training.step import optimise


class Task:
    """Shuffled training batches of one split (override `batches` for others) and an objective (override `loss`)."""

    def __init__(self, data: FeatureSet, batch_size: int, device: torch.device) -> None:
        self.data, self.batch_size, self.device = data, batch_size, device

    def batches(self, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch's training batches (this rank's share under torchrun), on the device."""
        return batch_iter(self.data, self.batch_size, self.device, generator)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The batch's mean loss (run under autocast by the engine)."""
        raise NotImplementedError

    def run_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, generator: torch.Generator,
                  accumulate: int = 1) -> float | dict:
        """One epoch: the engine's step over `batches`; the mean loss (or a dict with `train_loss` and more numbers
        for the run's history, from a task with an epoch of its own shape)."""
        return optimise(model, optimizer, self.batches(generator), self.loss, self.device, accumulate)

    def steps_per_epoch(self, accumulate: int = 1) -> int | None:
        """Optimiser steps in one epoch (a per-step schedule needs them; None: not known in advance)."""
        return -(-batches_per_epoch(self.data, self.batch_size) // accumulate)


class Classification(Task):
    """Cross entropy (class-weighted when `class_weights` is given) against the labels, or against the class
    probabilities an `augment(x, y, num_classes, generator)` gives (mixup); the feature type's augmentation."""

    def __init__(self, data: FeatureSet, batch_size: int, device: torch.device, augment: Callable | None = None,
                 class_weights: torch.Tensor | None = None, num_classes: int | None = None) -> None:
        super().__init__(data, batch_size, device)
        self.augment = augment
        self.num_classes = num_classes or (int(data.labels.max()) + 1 if augment is not None else None)
        self.weight = None if class_weights is None else class_weights.to(device)

    def batches(self, generator: torch.Generator) -> Iterator[Batch]:
        for batch in super().batches(generator):
            yield batch if self.augment is None else batch.with_input(
                *self.augment(batch.x, batch.labels, self.num_classes, generator))

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(forward(model, batch).float(), batch.labels, weight=self.weight)
