"""Use a trained model: rebuild it from its .pt + run card, and turn audio into class probabilities.

The run card says how the training features were made and how they became network inputs; `Extraction.from_card`
and `model_inputs` are the one place that reads it, so audio seen here goes through exactly the steps stage 2
(audio -> feature) and stage 3 (feature -> network input) applied to the training clips.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from models import build_model

from .corpus import AUDIO_SUFFIXES
from .config import TrainConfig
from .data import make_feature_set
from .engine import load_weights, predict_logits
from .errors import ToolkitError
from .features import FeatureParams, FeatureSet, FeatureType
from .runcard import AUTOENCODER, RunCard, card_path, read_card


def load_trained_model(pt_path: str, device: torch.device | str = "cpu") -> tuple[nn.Module, RunCard]:
    """The network of a training run, weights loaded and in eval mode, with its run card.

    A missing or unreadable file, or weights that do not fit the architecture and class count the card names, is
    a ToolkitError naming the file.
    """
    if not os.path.isfile(pt_path):
        raise ToolkitError(f"{pt_path}: model file not found; check the folder and file name")
    card = read_card(pt_path)
    if card.model == AUTOENCODER:
        raise ToolkitError(f"{card_path(pt_path)}: the run card of an autoencoder (stage 4a), not of a classifier; "
                           f"pass a classifier's .pt (train_cnn.py, cnn_classifier.py)")
    try:
        model = build_model(card.model, len(card.classes), card.input["shape"], encoder=card.init_detail.get("encoder"))
    except ToolkitError as e:
        raise ToolkitError(f"{card_path(pt_path)}: {e}")
    load_weights(model, pt_path, hint=f"it must match {os.path.basename(card_path(pt_path))} ({card.model}, "
                                      f"{len(card.classes)} classes): keep each .pt beside its own run card")
    return model.to(device).eval(), card


@dataclass(frozen=True)
class Extraction:
    """How a model's features are made from audio; hashable, so models trained on the same features share them."""

    feature: type[FeatureType]
    params: FeatureParams

    @classmethod
    def from_card(cls, card: RunCard) -> "Extraction":
        return cls(card.feature, card.feature_params)

    def __call__(self, audio_path: str) -> np.ndarray:
        """The feature stage 2 would have stored for this clip (raises ClipError if the clip is unusable)."""
        return self.feature.from_audio(audio_path, self.params)


def model_inputs(card: RunCard, features: list[np.ndarray], speakers: list | None = None) -> FeatureSet:
    """Stored features -> the FeatureSet a model's evaluation sees (speaker-normalised when its card says so)."""
    if card.normalize == "speaker" and speakers is None:
        raise ToolkitError(f"{card.model} for {card.category} was trained with --normalize speaker: say which file "
                           f"is whose voice (predict.py --speakers)")
    data = make_feature_set(card.feature, features, pd.DataFrame(index=range(len(features))), card.input_options,
                            params=card.features.get("params"), normalize=card.normalize, speakers=speakers,
                            stats=card.features.get("stats"))
    data.extra = {}  # evaluation takes the centred windows: no whole clips needed
    return data


def class_probabilities(model: nn.Module, data: FeatureSet, device: torch.device,
                        batch_size: int = TrainConfig.batch_size) -> np.ndarray:
    """Softmax probabilities (N, classes), through the evaluate loop's code."""
    return torch.softmax(predict_logits(model, data, batch_size, device), 1).numpy()


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
