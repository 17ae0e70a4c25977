"""Use a trained model: rebuild it from its .pt + run card, and turn whole recordings into class probabilities.

The run card says how the training features were made and how they became network inputs; `View.of` and
`model_inputs` are the one place that reads it, so audio seen here goes through exactly the steps stage 2 (audio ->
feature: the card's feature object) and stage 3 (feature -> network input: its input adapter) applied to the training
clips. A recording longer than the network's window is cut into windows (toolkit/io/windows.py: hop half a window),
each is classified, and the recording gets the mean probability (then the card's calibration temperature): the same
windows and rule stage 3 scores its long test clips with.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from toolkit.config import TrainConfig
from toolkit.errors import ToolkitError
from toolkit.evaluation.domain import distances, per_owner_mean
from toolkit.io.audio import load_audio
from toolkit.io.corpus import AUDIO_SUFFIXES
from toolkit.io.windows import MIN_HOP, window_and_hop
from toolkit.runcard import AUTOENCODER, CV_FOLD, RunCard, card_path, read_card
from toolkit.schemas import first_non_finite
from toolkit.serving.onnx_backend import OnnxNetwork

if TYPE_CHECKING:  # torch is imported where it is used: the ONNX backend of a mel model runs without it
    import torch
    from torch import nn

    from toolkit.features import FeatureSet, FeatureType

BACKENDS = ("torch", "onnx")


def find_trained_models(folder: str) -> tuple[list[str], list[str]]:
    """(classifier .pt files below `folder`, sorted; one line per .pt left out and why).

    A .pt counts when its run card loads and names a classifier. Left out without a word: `_last.pt` (training's
    resumable checkpoint of the same run), files without a card (the autoencoder's encoder/decoder weights) and
    cross-validation folds (the run's own .pt is the model to use). Cards that are broken or an autoencoder's are
    reported, so a model that is missing from a list has a reason.
    """
    found, skipped = [], []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = os.path.join(root, name)
            if (not name.endswith(".pt") or name.endswith("_last.pt") or not os.path.isfile(card_path(path))
                    or CV_FOLD.search(os.path.relpath(path, folder))):
                continue
            try:
                card = read_card(path)
            except ToolkitError as e:
                skipped.append(f"{path}: left out ({e})")
                continue
            if card.model == AUTOENCODER:
                skipped.append(f"{path}: left out (an autoencoder, not a classifier)")
                continue
            found.append(path)
    return found, skipped


def spectrogram_extraction(views: list["View"]) -> "FeatureType":
    """The spectrogram a recording is drawn with: the first mel model's, else one as stage 2 makes it by default."""
    found = next((v.feature for v in views if v.feature.name == "mel"), None)
    if found:
        return found
    from toolkit.features.mel import Mel, MelParams

    return Mel(MelParams(db_ref="fixed"))


def window_marks(classes: list[str], windows: list) -> list[tuple[float, float, str | None]]:
    """classify()'s windows of a recording as plot marks: (start, end, predicted class; None if skipped as quiet)."""
    return [(s, e, classes[int(p.argmax())] if p is not None else None) for s, e, p in windows]


def describe(card: RunCard, probs: np.ndarray) -> str:
    """'sex: Male (Male 0.731, Female 0.269)': a recording's calibrated probabilities in one line (3 decimals)."""
    return (f"{card.category}: {card.classes[int(probs.argmax())]} ("
            + ", ".join(f"{c} {p:.3f}" for c, p in zip(card.classes, probs)) + ")")


WINDOWS_PER_STACK = 4096  # windows stacked into network inputs at once (16 KB each for mel)


@dataclass(frozen=True)
class View:
    """What a model looks at in a recording: windows of `window` s every `hop` s, as features of `feature` (the card's
    feature object, or an export's front end). Hashable: models that look the same way share one computation per file."""

    feature: "FeatureType"
    window: float
    hop: float

    @classmethod
    def of(cls, card: RunCard, hop: float | None = None) -> "View":
        feature = card.feature
        window = feature.window_seconds(card.input_options)
        if hop is not None and hop < MIN_HOP * window:  # a window per sample would run for hours and fill memory
            raise ToolkitError(f"--window_hop {hop:g}: windows closer than {MIN_HOP:g} of {card.model}'s window "
                               f"({window:.3g} s) add work, not information; use at least {MIN_HOP * window:.3g}")
        return cls(feature, *window_and_hop(window, hop))


@dataclass
class Recording:
    """One file as the models see it: per view its windows (start s, end s, feature) and their loudness (dBFS)."""

    path: str
    seconds: float = 0.0
    windows: dict = field(default_factory=dict)
    loudness: dict = field(default_factory=dict)
    image: np.ndarray | None = None  # its whole spectrogram, for a plot
    error: str = ""


def window_db(audio: np.ndarray, start: float, end: float, sr: int) -> float:
    part = audio[int(start * sr): max(int(end * sr), int(start * sr) + 1)]
    return float(10 * np.log10(np.mean(part.astype(np.float64) ** 2) + 1e-12))


def analyse(job: tuple[str, list[View], float, "FeatureType | None"]) -> Recording:
    """Worker: a file's windows for every view (its audio read once per sample rate), or the reason it cannot be used."""
    path, views, max_seconds, plotted = job
    try:
        audio: dict[int, np.ndarray] = {}
        recording = Recording(path)
        for view in views + ([View(plotted, 0, 0)] if plotted else []):
            sr = view.feature.params.sr
            if sr not in audio:
                audio[sr] = load_audio(path, sr, max_seconds)
                recording.seconds = len(audio[sr]) / sr
            if view.feature is plotted and view.window == 0:
                recording.image = plotted.extract(audio[sr])
                continue
            recording.windows[view] = view.feature.windows(audio[sr], view.window, view.hop)
            recording.loudness[view] = [window_db(audio[sr], s, e, sr) for s, e, _ in recording.windows[view]]
        return recording
    except Exception as e:  # one bad file never stops the others (ClipError says what is wrong with it)
        text = str(e) if isinstance(e, ToolkitError) else f"{type(e).__name__}: {e}"
        return Recording(path, error=text if text.startswith(path) else f"{path}: {text}")


def keep_windows(loudness: list[float], quieter_than: float | None) -> list[bool]:
    """Which windows to classify: all, or (quieter_than = D dB) those within D dB of the loudest one."""
    if quieter_than is None:
        return [True] * len(loudness)
    loudest = max(loudness)
    return [level >= loudest - quieter_than for level in loudness]


class Prediction(tuple):
    """classify()'s result for one recording. It unpacks as (probabilities, windows) where windows are (start, end,
    probabilities or None if skipped as quiet); `distance` is the recording's out-of-domain score (the mean over its
    windows, `window_distances`) and `unlike_training` its flag, both None when the run card has no `domain`."""

    def __new__(cls, probs: np.ndarray, windows: list, distance: float | None = None,
                window_distances: list | None = None, threshold: float | None = None) -> "Prediction":
        self = super().__new__(cls, (probs, windows))
        self.distance, self.window_distances, self.threshold = distance, window_distances, threshold
        return self

    @property
    def unlike_training(self) -> bool | None:
        return None if self.distance is None else bool(self.distance > self.threshold)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def network_outputs(model, card: RunCard, features: list[np.ndarray], batch_size: int, device,
                    embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(logits, embeddings or None) of windows' features through a torch model or an exported one."""
    if isinstance(model, OnnxNetwork):
        logits, embedded = model.outputs(features, batch_size)
        return logits, embedded if embeddings else None
    from contextlib import nullcontext

    from toolkit.evaluation.domain import captured_embeddings
    from toolkit.training.engine import predict_logits

    with captured_embeddings(model) if embeddings else nullcontext() as caught:
        logits = predict_logits(model, model_inputs(card, features), batch_size, device).numpy()
    if not embeddings:
        return logits, None
    return logits, np.concatenate(caught) if caught else np.zeros((0, 0), np.float32)


def classify(model, card: RunCard, view: View, recordings: list[Recording], device, batch_size: int,
             speakers: list | None = None, quieter_than: float | None = None) -> list[Prediction]:
    """Per recording, a Prediction: (probabilities, per window (start, end, probabilities or None if skipped as
    quiet)) and the out-of-domain distance where the card has its summary. `model` is a torch network or an
    exported one (load_model).

    A recording's probabilities are the mean over its windows, then the card's calibration temperature.
    """
    features, owner, kept = [], [], []
    for i, r in enumerate(recordings):
        keep = keep_windows(r.loudness[view], quieter_than)
        kept.append(keep)
        for (_, _, f), k in zip(r.windows[view], keep):
            if k:
                features.append(f)
                owner.append(i)
    window_speakers = [speakers[i] for i in owner] if speakers is not None else None
    if card.normalize == "speaker":  # over all of a speaker's windows at once
        if window_speakers is None:
            raise ToolkitError(f"{card.model} for {card.category} was trained with --normalize speaker: say which file "
                               f"is whose voice (predict.py --speakers)")
        from toolkit.training.data import normalize_by_speaker

        features = normalize_by_speaker(view.feature, features, window_speakers)
    probs, embedded = [], []
    for start in range(0, len(features), WINDOWS_PER_STACK):  # the stacked inputs of a long recording stay bounded
        logits, embedding = network_outputs(model, card, features[start : start + WINDOWS_PER_STACK], batch_size,
                                            device, card.domain is not None)
        probs.append(softmax(logits.astype(np.float32)))
        embedded.append(embedding)
    probs = np.concatenate(probs) if probs else np.empty((0, len(card.classes)), np.float32)
    owners = np.asarray(owner, dtype=np.int64)
    with np.errstate(divide="ignore"):
        per_file = softmax(np.log(per_owner_mean(probs, owners, len(recordings))) / np.float32(card.temperature))
    window_distances = distances(card.domain, np.concatenate(embedded)) if card.domain and embedded else None
    file_distances = per_owner_mean(window_distances, owners, len(recordings)) if window_distances is not None else None
    # a recording with windows: its probabilities are numbers, or nothing is shown (one pass over all windows)
    broken = ~np.isfinite(per_file).all(1) & (np.bincount(owners, minlength=len(recordings)) > 0)
    broken[owners[~np.isfinite(probs).all(1)]] = True
    if broken.any():
        path = recordings[int(np.flatnonzero(broken)[0])].path
        raise ToolkitError(f"{path}: {card.model} gave non-finite (NaN/inf) probabilities for it; the "
                           f"model or its run card is broken: re-train it, or restore its .pt and .json")
    out, cursor = [], 0
    for r, keep in zip(recordings, kept):
        rows, row_distances = [], []
        for (s, e, _), k in zip(r.windows[view], keep):
            rows.append((s, e, probs[cursor] if k else None))
            row_distances.append(float(window_distances[cursor]) if k and window_distances is not None else None)
            cursor += k
        i = len(out)
        out.append(Prediction(per_file[i], rows, None if file_distances is None else float(file_distances[i]),
                              row_distances, (card.domain or {}).get("threshold")))
    return out


def model_inputs(card: RunCard, features: list[np.ndarray]) -> FeatureSet:
    """Features (already speaker-normalised where the card says so) -> the FeatureSet a model's evaluation sees."""
    from toolkit.training.data import for_evaluation, make_feature_set

    data = make_feature_set(card.feature, features, pd.DataFrame(index=range(len(features))), card.input_options,
                            params=card.features.get("params"), stats=card.features.get("stats"))
    return for_evaluation(data)  # evaluation takes the centred windows: no whole clips needed


def class_probabilities(model: nn.Module, data: FeatureSet, device: torch.device,
                        batch_size: int = TrainConfig.batch_size) -> np.ndarray:
    """Softmax probabilities (N, classes), through the evaluate loop's code; non-finite ones are an error."""
    import torch

    from toolkit.training.engine import predict_logits

    probs = torch.softmax(predict_logits(model, data, batch_size, device), 1).numpy()
    if first_non_finite(probs) is not None:
        raise ToolkitError(f"{type(model).__name__} gave non-finite (NaN/inf) probabilities; the model is broken: re-train it")
    return probs


def audio_files_in(folder: str, recursive: bool = False) -> list[str]:
    """The audio files of a folder (regular files, hidden ones and hidden folders skipped), sorted; with
    `recursive` those of its subfolders too."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found += sorted(os.path.join(root, n) for n in names if n.lower().endswith(AUDIO_SUFFIXES)
                        and not n.startswith(".") and os.path.isfile(os.path.join(root, n)))
    return found


def expand_audio_paths(paths: list[str], recursive: bool = False) -> tuple[list[str], dict[str, str]]:
    """(files, problems): files as given, a folder's audio files (audio_files_in); a folder without any is a
    problem {folder: message}, reported with the files that fail."""
    files, problems = [], {}
    for path in paths:
        if os.path.isdir(path):
            found = audio_files_in(path, recursive)
            if not found:
                where = "in it or its subfolders" if recursive else "directly inside it (--recursive for subfolders)"
                problems[path] = f"{path}: folder has no audio files ({', '.join(AUDIO_SUFFIXES)}) {where}"
            files += found
        else:
            files.append(path)  # a missing file is reported with the other clips that fail, not here
    return files, problems
