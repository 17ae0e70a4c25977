"""What the engine passes from the data to a task: one batch, with everything a network or an objective may need.

A batch is not a bare `(x, y)` pair: padded sequences carry their lengths beside the values (no sentinel inside the
tensor), and the items' positions in their split name the clips (data.paths[i]) for per-clip bookkeeping.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from toolkit.lazy import torch  # imported when first used: --help needs no torch


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # "x": the network's input; "lengths": valid samples per row of a padded sequence
    labels: torch.Tensor  # (N,) class indices (-1: unlabeled) or (N, C) class probabilities (mixup)
    index: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))  # positions in the split
    weight: float = 1.0  # the batch's weight in a task's objective (pseudo-labeling's alpha)

    @property
    def x(self) -> torch.Tensor:
        return self.inputs["x"]

    @property
    def lengths(self) -> torch.Tensor | None:
        return self.inputs.get("lengths")

    def __len__(self) -> int:
        return len(self.x)

    def with_input(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> "Batch":
        """The same batch with another network input (an augmented one) and, given, other targets."""
        return Batch({**self.inputs, "x": x}, self.labels if labels is None else labels, self.index, self.weight)


def forward(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """The network's output for a batch: model(x), with the other inputs (a padded sequence's lengths) as keywords."""
    return model(batch.x, **{k: v for k, v in batch.inputs.items() if k != "x"})
