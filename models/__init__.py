"""One registry for every network: build_model(name, num_classes, pretrained=..., weights=...)."""
from __future__ import annotations

import os

import torch
from torch import nn

from toolkit.errors import ToolkitError
from toolkit.fileio import load_checkpoint

from .autoencoder import AutoEncoder, Decoder
from .cnn import CNN3, CNN9, Encoder

MODEL_NAMES = ["cnn3", "cnn9", "resnet18", "resnet34", "vgg16", "efficientnet"]
ALIASES = {"efficientnet_b2": "efficientnet", "renset34": "resnet34"}  # renset34: the seed README's typo
TORCHVISION = {  # our name -> (torchvision builder, weights enum name)
    "resnet18": ("resnet18", "ResNet18_Weights"),
    "resnet34": ("resnet34", "ResNet34_Weights"),
    "vgg16": ("vgg16", "VGG16_Weights"),
    "efficientnet": ("efficientnet_b2", "EfficientNet_B2_Weights"),
}

__all__ = ["build_model", "canonical_name", "MODEL_NAMES", "AutoEncoder", "Encoder", "Decoder", "CNN3", "CNN9"]


def canonical_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in MODEL_NAMES:
        raise ToolkitError(f"unknown model '{name}': choose one of {', '.join(MODEL_NAMES)} (or efficientnet_b2)")
    return name


def _imagenet_state_dict(name: str, weights_path: str | None) -> dict:
    """ImageNet weights from --weights or torchvision's cache; never a bare network traceback."""
    import torchvision.models as tvm

    if weights_path:
        return load_checkpoint(weights_path, "fix --weights or pass --no-pretrained")
    weights = getattr(tvm, TORCHVISION[name][1]).DEFAULT
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    if os.path.isfile(cached):
        return load_checkpoint(cached, "delete it (a partial download?) or pass --weights PATH or --no-pretrained")
    try:
        return weights.get_state_dict(progress=False)
    except Exception:
        raise ToolkitError(
            f"ImageNet weights for {name} are not in the torchvision cache ({cached}) and cannot be downloaded "
            f"(no network): copy them there, pass --weights PATH, or train from scratch with --no-pretrained"
        )


def _replace_head(net: nn.Module, name: str, num_classes: int) -> None:
    if name.startswith("resnet"):
        net.fc = nn.Linear(net.fc.in_features, num_classes)
    else:  # vgg16 and efficientnet end their `classifier` Sequential with the Linear layer
        net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, num_classes)


def build_model(name: str, num_classes: int, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    """A network for 3×H×W inputs (128×128 by default) with `num_classes` outputs."""
    name = canonical_name(name)
    if name == "cnn3":
        return CNN3(num_classes)
    if name == "cnn9":
        return CNN9(num_classes)
    import torchvision.models as tvm

    net = getattr(tvm, TORCHVISION[name][0])(weights=None)
    if pretrained or weights:
        state = _imagenet_state_dict(name, weights)
        try:
            net.load_state_dict(state)
        except RuntimeError:
            raise ToolkitError(f"{weights or name}: these are not ImageNet weights for {name}; pass the right file or --no-pretrained")
    _replace_head(net, name, num_classes)
    return net
