"""One registry for every network: a model is one MODELS entry; build_model(name, num_classes, input_shape, ...).

A model with hyperparameters of its own (mlp: width, depth) names a frozen dataclass of them as ModelSpec.args: its
fields become train_cnn.py's flags (add_model_flags), their values the run card's model_args, from which
load_trained_model rebuilds the network (predict.py, evaluate.py) with no code of its own."""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, fields
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Callable

from toolkit.errors import ToolkitError
from toolkit.fileio import load_checkpoint
from toolkit.runcard import AUTOENCODER, RunCard, card_path, read_card
from toolkit.serving.inference import BACKENDS
from toolkit.serving.onnx_backend import OnnxNetwork

from .hyperparameters import FrameArgs, MLPArgs

if TYPE_CHECKING:
    import torch
    from torch import nn


def submodule(name: str) -> ModuleType:
    """models.{name}, imported when first used: the registry (names, flags, --help) is read without torch, which only
    building or loading a network imports."""
    return import_module(f"{__name__}.{name}")


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Module]  # (num_classes, input shape of one item[, encoder=, pretrained=]) -> network
    takes: str  # the feature kind it accepts: "image" (3×H×W), "vector" (D, or L×D stacks) or "audio" (waveforms)
    imagenet: str | None = None  # torchvision's weights enum, where ImageNet weights exist
    image_size: tuple[int, int] | None = None  # the only H×W it can take (a Linear layer sized for it)
    recipe: str = "default"  # the training recipe (toolkit/config.py RECIPES) when no --recipe is given
    args: type | None = None  # the model's own hyperparameters: a frozen dataclass, its fields train_cnn.py's flags


def torchvision_model(builder: str, weights: str) -> ModelSpec:
    def build(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        import torchvision.models as tvm

        return getattr(tvm, builder)(weights=None)  # 1000 ImageNet classes; build_model replaces the head

    return ModelSpec(build, "image", imagenet=weights)


MODELS: dict[str, ModelSpec] = {
    "cnn3": ModelSpec(lambda n, shape: submodule("cnn").CNN3(n), "image", image_size=(128, 128)),
    "cnn9": ModelSpec(lambda n, shape: submodule("cnn").CNN9(n), "image"),
    "resnet18": torchvision_model("resnet18", "ResNet18_Weights"),
    "resnet34": torchvision_model("resnet34", "ResNet34_Weights"),
    "vgg16": torchvision_model("vgg16", "VGG16_Weights"),
    "efficientnet": torchvision_model("efficientnet_b2", "EfficientNet_B2_Weights"),
    "linear": ModelSpec(lambda n, shape: submodule("heads").VectorHead(shape, n), "vector", recipe="vector"),
    "mlp": ModelSpec(lambda n, shape, args: submodule("heads").mlp(n, shape, args), "vector", recipe="vector", args=MLPArgs),
    "frame_mlp": ModelSpec(lambda n, shape, args: submodule("frame_mlp").FrameMLP(n, shape[-2], args), "image",
                           recipe="frame_mlp", args=FrameArgs),
    "wav2vec2": ModelSpec(lambda n, shape, encoder, pretrained: submodule("speech").build_speech_classifier(n, encoder, pretrained),
                          "audio"),
}
MODEL_NAMES = list(MODELS)
ALIASES = {"efficientnet_b2": "efficientnet", "renset34": "resnet34"}  # renset34: the seed README's typo

# The networks' classes, imported on first use (models.CNN3, `from models import CNN3`) as the builders above are.
CLASSES = {"AutoEncoder": "autoencoder", "Decoder": "autoencoder", "CNN3": "cnn", "CNN9": "cnn", "Encoder": "cnn",
           "FrameMLP": "frame_mlp", "SpeechClassifier": "speech"}

__all__ = ["build_model", "canonical_name", "check_input", "add_model_flags", "model_args_of", "MODELS", "MODEL_NAMES", "AutoEncoder", "Encoder",
           "Decoder", "CNN3", "CNN9", "FrameMLP", "SpeechClassifier", "load_model", "load_trained_model"]


def __getattr__(name: str):
    if name in CLASSES:
        return getattr(submodule(CLASSES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def canonical_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in MODELS:
        raise ToolkitError(f"unknown model '{name}': choose one of {', '.join(MODEL_NAMES)} (or efficientnet_b2)")
    return name


def models_taking(kind: str) -> list[str]:
    return [name for name, spec in MODELS.items() if spec.takes == kind]


def check_input(name: str, kind: str, shape: tuple[int, ...] | list[int], source: str) -> None:
    """A model given features it cannot take is a one-line error naming where the features came from."""
    spec = MODELS[canonical_name(name)]
    if spec.takes == "audio" and kind != "audio":
        raise ToolkitError(f"{source}: holds {kind} features, but {name} is a speech encoder fine-tuned on the audio "
                           f"itself; train it with train_wav2vec2.py (it reads the clips this CSV lists)")
    if spec.takes != kind:
        raise ToolkitError(f"{source}: holds {kind} features, but {name} takes {spec.takes} features; "
                           f"use one of {', '.join(models_taking(kind))}")
    if spec.image_size and tuple(shape[-2:]) != spec.image_size:
        raise ToolkitError(f"{source}: {name} takes {spec.image_size[0]}×{spec.image_size[1]} images (its Linear layer "
                           f"is sized for them), these are {shape[-2]}×{shape[-1]}; use --frames {spec.image_size[1]} "
                           f"or another model ({', '.join(n for n in models_taking('image') if n != name)})")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """One flag per field of each model's own hyperparameters (ModelSpec.args), e.g. mlp's --hidden and --layers.
    Unset flags stay unset (SUPPRESS): model_args_of tells them from a value the user typed."""
    g = p.add_argument_group("model arguments (recorded in the run card's model_args)")
    owners: dict[str, list] = {}  # a name two models share is one flag, its help giving each model's default
    for name, spec in MODELS.items():
        for f in fields(spec.args) if spec.args else ():
            owners.setdefault(f.name, []).append((name, f))
    for flag, users in owners.items():
        defaults = "; ".join(f"{name}: {f.default}" for name, f in users)
        g.add_argument(f"--{flag}", type=users[0][1].metadata["type"], default=argparse.SUPPRESS,
                       help=f"{users[0][1].metadata['help']} (default {defaults})")


def model_args_of(name: str, given: argparse.Namespace | dict) -> dict:
    """Model `name`'s own hyperparameters, every one (defaults filled in), from parsed flags (only the ones typed
    count) or a run card's model_args. A card (model_args, or a --config re-run) that lacks a field added after it was
    written gets the field's "absent" value, the one its model was trained with. A hyperparameter the model lacks, or
    a value its flag would refuse, is a one-line error."""
    spec = MODELS[canonical_name(name)]
    own = {f.name: f for f in fields(spec.args)} if spec.args else {}
    # a card records every field of its day, so a non-empty dict is one; {} is build_model's "no card: defaults"
    from_card = bool(given) if isinstance(given, dict) else getattr(given, "config", None) is not None
    if isinstance(given, argparse.Namespace):
        given = {k: v for k, v in vars(given).items() if k in _MODEL_FLAGS}
    values = {k: f.metadata["absent"] for k, f in own.items() if from_card and k not in given and "absent" in f.metadata}
    for key, value in given.items():
        if key not in own:
            takes = f"its own are {', '.join('--' + k for k in own)}" if own else "it has none"
            raise ToolkitError(f"--{key}: not a hyperparameter of {name} ({takes}); drop it or choose another --model")
        try:  # a card's value passes the same check as the flag's
            values[key] = own[key].metadata["type"](str(value))
        except argparse.ArgumentTypeError as e:
            raise ToolkitError(f"--{key} {value!r}: {e}") from None
    return asdict(spec.args(**values)) if spec.args else {}


_MODEL_FLAGS = {f.name for spec in MODELS.values() if spec.args for f in fields(spec.args)}


def _imagenet_state_dict(name: str, weights_path: str | None) -> dict:
    """ImageNet weights from --weights or torchvision's cache; never a bare network traceback."""
    import torch
    import torchvision.models as tvm

    if weights_path:
        return load_checkpoint(weights_path, "fix --weights or pass --no-pretrained")
    weights = getattr(tvm, MODELS[name].imagenet).DEFAULT
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


def replace_head(net: nn.Module, num_classes: int) -> None:
    """Put a fresh Linear(in_features -> num_classes) where the network's last Linear layer is."""
    from torch import nn

    name, last = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
    parent, _, attr = name.rpartition(".")
    setattr(net.get_submodule(parent), attr, nn.Linear(last.in_features, num_classes))


def build_model(name: str, num_classes: int, input_shape: tuple[int, ...] = (3, 128, 128), pretrained: bool = False,
                weights: str | None = None, encoder: dict | None = None, model_args: dict | None = None) -> nn.Module:
    """The network `name` for items of `input_shape` with `num_classes` outputs (ImageNet-initialised on request).
    `model_args`: the model's own hyperparameters (see model_args_of(); missing ones take their defaults).

    A model of audio (a fine-tuned speech encoder) is built from `encoder`, its run card's init_detail['encoder'];
    `pretrained` then loads the encoder's own pretrained weights."""
    name = canonical_name(name)
    spec = MODELS[name]
    if spec.takes == "audio":
        if not encoder:
            raise ToolkitError(f"{name} is a fine-tuned speech encoder: its run card must describe the encoder "
                               f"(init_detail.encoder); restore the card train_wav2vec2.py wrote")
        return spec.build(num_classes, tuple(input_shape), encoder=encoder, pretrained=pretrained)
    own = model_args_of(name, model_args or {})  # checked even for a model without any: a stray one is an error
    net = spec.build(num_classes, tuple(input_shape), *([spec.args(**own)] if spec.args else []))
    if spec.imagenet and (pretrained or weights):
        state = _imagenet_state_dict(name, weights)
        try:
            net.load_state_dict(state)
        except RuntimeError:
            raise ToolkitError(f"{weights or name}: these are not ImageNet weights for {name}; pass the right file or --no-pretrained")
    if spec.imagenet:
        replace_head(net, num_classes)
    return net


def load_trained_model(pt_path: str, device: "torch.device | str" = "cpu") -> tuple[nn.Module, RunCard]:
    """The network of a training run, weights loaded and in eval mode, with its run card.

    A missing or unreadable file, or weights that do not fit the architecture and class count the card names, is
    a ToolkitError naming the file.
    """
    from toolkit.training.engine import load_weights

    if not os.path.isfile(pt_path):
        raise ToolkitError(f"{pt_path}: model file not found; check the folder and file name")
    card = read_card(pt_path)
    if card.model == AUTOENCODER:
        raise ToolkitError(f"{card_path(pt_path)}: the run card of an autoencoder (stage 4a), not of a classifier; "
                           f"pass a classifier's .pt (train_cnn.py, cnn_classifier.py)")
    try:
        model = build_model(card.model, len(card.classes), card.input["shape"], encoder=card.init_detail.get("encoder"),
                            model_args=card.model_args)
    except ToolkitError as e:
        raise ToolkitError(f"{card_path(pt_path)}: {e}")
    load_weights(model, pt_path, hint=f"it must match {os.path.basename(card_path(pt_path))} ({card.model}, "
                                      f"{len(card.classes)} classes): keep each .pt beside its own run card")
    return model.to(device).eval(), card


def load_model(path: str, device="cpu", backend: str = "torch", threads: int | None = None) -> tuple:
    """(network, run card) of a trained model on `backend`: 'torch' (the .pt and its card) or 'onnx' (the folder
    export_onnx.py wrote: the folder, its model.onnx, or the .pt it was exported from). classify() takes either."""
    if backend == "onnx":
        network = OnnxNetwork(path, threads)
        return network, network.card
    if backend != "torch":
        raise ToolkitError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return load_trained_model(path, device)
