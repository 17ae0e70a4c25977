"""Use a trained model: rebuild it from its .pt + JSON sidecar, and turn audio into class probabilities.

The sidecar (written by toolkit.engine.fit beside every state dict) says how the training images were made;
`Preprocessing.from_sidecar` is the one place that reads it, so audio seen here goes through exactly the
steps stage 2 (audio -> image) and stage 3 (image -> network input) applied to the training clips.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models import build_model

from .audio import MelParams, audio_to_image
from .corpus import AUDIO_SUFFIXES
from .data import input_options, prepare_image
from .engine import load_weights, predict_logits
from .errors import ToolkitError
from .fileio import read_json


def sidecar_path(pt_path: str) -> str:
    """`cnn3_sex.pt` -> `cnn3_sex.json`: where the training stages put what is needed to use the weights."""
    return os.path.splitext(pt_path)[0] + ".json"


def read_sidecar(pt_path: str) -> dict:
    path = sidecar_path(pt_path)
    if not os.path.isfile(path):
        raise ToolkitError(f"{path}: JSON sidecar of {os.path.basename(pt_path)} not found; the training stage writes it "
                           f"beside the .pt: copy it along with the weights (or re-train)")
    try:
        sidecar = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ToolkitError(f"{path}: not valid JSON ({e}); restore it from the training run's folder")
    missing = [k for k in ("model", "classes") if k not in (sidecar if isinstance(sidecar, dict) else {})]
    if missing:
        raise ToolkitError(f"{path}: no {missing} entry; it is not the sidecar of a classifier trained by this toolkit")
    return sidecar


def load_trained_model(pt_path: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """The network of a training run, weights loaded and in eval mode, with its sidecar dict.

    A missing or unreadable file, or weights that do not fit the architecture and class count the JSON
    names, is a ToolkitError naming the file.
    """
    if not os.path.isfile(pt_path):
        raise ToolkitError(f"{pt_path}: model file not found; check the folder and file name")
    sidecar = read_sidecar(pt_path)
    try:
        model = build_model(sidecar["model"], len(sidecar["classes"]))
    except ToolkitError as e:
        raise ToolkitError(f"{sidecar_path(pt_path)}: {e}")
    load_weights(model, pt_path, hint=f"it must match {os.path.basename(sidecar_path(pt_path))} ({sidecar['model']}, "
                                      f"{len(sidecar['classes'])} classes): keep each .pt beside its own JSON")
    return model.to(device).eval(), sidecar


@dataclass(frozen=True)
class Preprocessing:
    """How a model's inputs were made; hashable, so models trained on the same images share one spectrogram."""

    mel: MelParams
    inputs: tuple = ()  # prepare_image keyword arguments (image size, time axis, ...) as sorted (key, value) pairs

    @classmethod
    def from_sidecar(cls, sidecar: dict) -> "Preprocessing":
        # Preprocessing options a training run records in its sidecar are read by input_options, in one place.
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in input_options(sidecar).items()}
        return cls(mel=MelParams.from_dict(sidecar.get("spectrogram") or {}), inputs=tuple(sorted(options.items())))

    def audio_to_image(self, audio_path: str) -> np.ndarray:
        """The 2-D uint8 spectrogram stage 2 would have stored for this clip (raises ClipError if unusable)."""
        return audio_to_image(audio_path, self.mel)

    def image_to_input(self, image: np.ndarray) -> np.ndarray:
        """(1, H, W) uint8, as stage 3 makes it from a stored image for evaluation."""
        return prepare_image(image, **dict(self.inputs))


def class_probabilities(model: nn.Module, inputs: np.ndarray | torch.Tensor, device: torch.device,
                        batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities (N, classes) for uint8 network inputs (N, 1, H, W), via the evaluate loop's code."""
    images = inputs if isinstance(inputs, torch.Tensor) else torch.from_numpy(np.array(inputs))  # a writable copy
    return torch.softmax(predict_logits(model, images, batch_size, device), 1).numpy()


def expand_audio_paths(paths: list[str]) -> list[str]:
    """Files as given; a folder becomes the audio files directly inside it (sorted, hidden files skipped)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, n) for n in os.listdir(path)
                           if n.lower().endswith(AUDIO_SUFFIXES) and not n.startswith("."))
            if not found:
                raise ToolkitError(f"{path}: folder has no audio files ({', '.join(AUDIO_SUFFIXES)}); pass files or another folder")
            files += found
        else:
            files.append(path)  # a missing file is reported with the other clips that fail, not here
    return files
