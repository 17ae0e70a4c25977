"""Heads for vector features (eGeMAPS, pooled speech-encoder states): linear and a small MLP.

An item is a vector (D,) or a stack of per-layer vectors (L, D), as a speech encoder's hidden states are; a stack is
first reduced by a learned softmax-weighted sum over its layers (the SUPERB protocol), so the head learns which
layers carry the trait.
"""
from __future__ import annotations

import torch
from torch import nn

from .hyperparameters import DROPOUT, MLPArgs


class LayerSum(nn.Module):
    """(B, L, D) -> (B, D): softmax(w)-weighted sum over the L layers, w learned (starting equal)."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bld,l->bd", x, torch.softmax(self.weights, 0))


def hidden_layers(width: int, hidden: tuple[int, ...], dropout: float = DROPOUT) -> nn.Sequential:
    """[Linear -> ReLU -> Dropout] per hidden width, from `width` inputs."""
    widths = [width, *hidden]
    blocks: list[nn.Module] = []
    for w_in, w_out in zip(widths, widths[1:]):
        blocks += [nn.Linear(w_in, w_out), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*blocks)


class VectorHead(nn.Module):
    """[LayerSum] -> [Linear -> ReLU -> Dropout] per hidden width -> Linear(num_classes)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (), dropout: float = DROPOUT) -> None:
        super().__init__()
        if len(input_shape) not in (1, 2):
            raise ValueError(f"a vector head takes (D,) or (layers, D) items, not {tuple(input_shape)}")
        self.layers = LayerSum(input_shape[0]) if len(input_shape) == 2 else nn.Identity()
        self.hidden = hidden_layers(input_shape[-1], hidden, dropout)
        self.classifier = nn.Linear(hidden[-1] if hidden else input_shape[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(self.layers(x)))


def mlp(num_classes: int, input_shape: tuple[int, ...], args: MLPArgs = MLPArgs()) -> VectorHead:
    return VectorHead(input_shape, num_classes, hidden=(args.hidden,) * args.layers, dropout=args.dropout)
