"""The seed's own networks: cnn3 (whose first part is the autoencoder's encoder) and cnn9."""
from __future__ import annotations

import torch
from torch import nn

CODE_SIZE = 64  # the encoder's output: cnn3's penultimate layer and the autoencoder's bottleneck


class Encoder(nn.Module):
    """3×128×128 -> 64-d code. Shared verbatim by cnn3 and the autoencoder so weights move between them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=4, stride=2),  # 128 -> 63
            nn.Tanh(),
            nn.Conv2d(16, 32, kernel_size=4, stride=2),  # 63 -> 30
            nn.BatchNorm2d(32),
            nn.Tanh(),
            nn.Conv2d(32, 64, kernel_size=4, stride=2),  # 30 -> 14
            nn.Tanh(),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 14 * 14, 128), nn.Linear(128, CODE_SIZE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))


class CNN3(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.classifier = nn.Linear(CODE_SIZE, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))


class CNN9(nn.Module):
    """Nine 3×3 convolutions, ReLU then BatchNorm each; zero-pad after 1–8, max-pool after 2, 4, 6, 8, and a last
    ReLU after the ninth BatchNorm (the seed's forward ends `act(convnorm9(act(conv9(x))))`)."""

    WIDTHS = [3, 16, 32, 64, 128, 256, 256, 256, 256, 256]

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(1, 10):
            layers += [nn.Conv2d(self.WIDTHS[i - 1], self.WIDTHS[i], kernel_size=3), nn.ReLU(), nn.BatchNorm2d(self.WIDTHS[i])]
            if i <= 8:
                layers.append(nn.ZeroPad2d(2))
            if i in (2, 4, 6, 8):
                layers.append(nn.MaxPool2d(2))
        layers.append(nn.ReLU())  # last: the parameter names of the layers before it stay as they were
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
