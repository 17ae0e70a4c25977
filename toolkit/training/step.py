"""The engine's step, in one place: forward and objective under mixed precision, backward, gradient accumulation,
the optimiser step (whose learning rate the run's Schedule sets), the loss summed over the ranks under torchrun."""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from toolkit import precision
from toolkit.training import distributed
from toolkit.training.batch import Batch


def autocast(device: torch.device):
    """bf16 mixed precision on CUDA (no loss scaling needed); on the CPU full precision unless --precision bf16
    (toolkit/precision.py)."""
    return precision.autocast(device)


def optimise(model: nn.Module, optimizer: torch.optim.Optimizer, batch_iter: Iterable[Batch],
             objective: Callable[[nn.Module, Batch], torch.Tensor], device: torch.device, accumulate: int = 1) -> float:
    """The engine's step: forward and objective under autocast, backward, and one optimiser step per `accumulate`
    batches (already on `device`); returns the mean training loss (over every rank's share under torchrun).

    `accumulate` > 1 sums the gradients of that many batches (each loss scaled by 1/accumulate) before a step, so
    a small batch that fits in memory trains like one `accumulate` times larger; a remainder still gets its step.
    The learning rate of each step is set by the run's Schedule (hooked on the optimiser), whoever calls step().
    """
    model.train()
    total, count, pending = 0.0, 0, 0
    optimizer.zero_grad(set_to_none=True)
    for batch in batch_iter:
        with autocast(device):
            loss = objective(model, batch)
        (loss / accumulate if accumulate > 1 else loss).backward()
        pending += 1
        if pending == accumulate:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            pending = 0
        total += loss.detach().float() * len(batch)  # stays on the device: no sync per step
        count += len(batch)
    if pending:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if distributed.active():  # the epoch's loss over every rank's share
        total, count = distributed.all_sum(torch.as_tensor(total, dtype=torch.float32, device=device),
                                           torch.tensor(float(count), device=device))
        count = int(count)
    return float(total) / max(count, 1)
