"""Classify recordings from Python: load a trained model once, then ask about files or arrays (docs/python-api.md).

    from models.api import load_classifier

    clf = load_classifier("Models/demo/cnn3_sex.pt")         # or an export folder with backend="onnx"
    result = clf.predict("a.wav")                             # or clf.predict(samples, sr)
    result.predicted, result.probabilities                   # 'Male', {'Male': 0.73, 'Female': 0.27}

The numbers are predict.py's: the same windows, network, mean over windows and calibration (toolkit.serving.inference).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.io.audio import MAX_SECONDS, MIN_SECONDS, ClipError
from toolkit.serving.inference import Prediction, Recording, View, analyse, classify, window_db

from models import load_model


@dataclass
class Result:
    """One recording's answer: calibrated class probabilities (mean over its windows), each window's own, and how
    unlike the training inputs it is (None for a model whose run card has no training summary)."""

    predicted: str
    probabilities: dict[str, float]
    windows: list[tuple[float, float, dict[str, float]]]  # (start s, end s, probabilities)
    distance: float | None
    unlike_training: bool | None
    seconds: float


class Classifier:
    """A trained model ready to classify: `predict(path)` or `predict(samples, sr)`."""

    def __init__(self, model, card, device="cpu", batch_size: int = 64, window_hop: float | None = None) -> None:
        if card.normalize == "speaker":
            raise ToolkitError(f"{card.model} for {card.category} was trained with --normalize speaker, which needs all "
                               f"of a speaker's files at once: use predict.py --speakers")
        self.model, self.card, self.device, self.batch_size = model, card, device, batch_size
        self.view = View.of(card, window_hop)
        self.view.feature.warm_up()

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    @property
    def sample_rate(self) -> int:
        return self.view.feature.params.sr

    def predict(self, audio: str | os.PathLike | np.ndarray, sr: int | None = None) -> Result:
        """Classify an audio file (any format, rate and channel count) or a waveform `audio` at rate `sr` (1-D, or
        (samples, channels) as soundfile reads it: channels are averaged, as for a file)."""
        if isinstance(audio, (str, os.PathLike)):
            recording = analyse((os.fspath(audio), [self.view], MAX_SECONDS, None))
            if recording.error:
                raise ClipError(recording.error)
        else:
            recording = self._recording_of(np.asarray(audio), sr)
        return self._result(classify(self.model, self.card, self.view, [recording], self.device, self.batch_size)[0],
                            recording.seconds)

    def _recording_of(self, samples: np.ndarray, sr: int | None) -> Recording:
        """A waveform as analyse() makes a file's: mono float32 at the model's rate (soxr, as load_audio), windows."""
        if not sr or not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise ToolkitError(f"predict(samples, sr): give the sample rate of the samples as a positive whole number, got {sr!r}")
        if samples.ndim not in (1, 2) or samples.dtype.kind not in "fiu" or not np.isfinite(samples).all():
            raise ToolkitError(f"predict(samples, sr): samples must be finite numbers, 1-D or (samples, channels); got "
                               f"shape {samples.shape}, dtype {samples.dtype}")
        y = samples.astype(np.float32)
        y = y.mean(axis=1) if y.ndim == 2 else y
        if sr != self.sample_rate:
            import soxr

            y = soxr.resample(y, sr, self.sample_rate).astype(np.float32)
        if len(y) < MIN_SECONDS * self.sample_rate:
            raise ClipError(f"the waveform is too short ({len(y) / self.sample_rate:.3f} s < {MIN_SECONDS} s)")
        view, params = self.view, self.view.feature.params
        windows = view.feature.windows(y, view.window, view.hop)
        return Recording("(array)", len(y) / params.sr, {view: windows},
                         {view: [window_db(y, s, e, params.sr) for s, e, _ in windows]})

    def _result(self, prediction: Prediction, seconds: float) -> Result:
        probs, windows = prediction
        named = lambda p: {c: float(v) for c, v in zip(self.card.classes, p)}  # noqa: E731
        return Result(self.card.classes[int(probs.argmax())], named(probs), [(s, e, named(p)) for s, e, p in windows],
                      prediction.distance, prediction.unlike_training, seconds)


def load_classifier(path: str, backend: str = "torch", device: str = "auto", threads: int | None = None,
                    window_hop: float | None = None) -> Classifier:
    """A trained model (a .pt with its run card, or with backend='onnx' export_onnx.py's folder) as a Classifier."""
    if backend == "torch":
        from toolkit.cli import pick_device

        device = pick_device(device, threads)
    model, card = load_model(path, device, backend, threads)
    return Classifier(model, card, device, window_hop=window_hop)
