"""The seed's 3-layer convolutional autoencoder; its encoder is cnn3's encoder (models.cnn.Encoder)."""
from __future__ import annotations

import torch
from torch import nn

from .cnn import CODE_SIZE, Encoder


class Decoder(nn.Module):
    """64-d code -> 3×128×128 in [0, 1] (sigmoid output, matching the [0, 1] input images)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(CODE_SIZE, 128), nn.Linear(128, 64 * 14 * 14), nn.Unflatten(1, (64, 14, 14)))
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2),  # 14 -> 30
            nn.BatchNorm2d(32),
            nn.Tanh(),
            nn.ConvTranspose2d(32, 16, kernel_size=4, stride=2, output_padding=1),  # 30 -> 63
            nn.BatchNorm2d(16),
            nn.Tanh(),
            nn.ConvTranspose2d(16, 3, kernel_size=4, stride=2),  # 63 -> 128
            nn.Sigmoid(),
        )

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(code))


class AutoEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
