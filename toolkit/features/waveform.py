"""The waveform itself: what a fine-tuned speech encoder (train_wav2vec2.py, models/speech.py) takes.

Nothing is stored by stage 2: each clip is read from the split CSVs' Audio_file_path at the encoder's sampling rate
and z-scored when the encoder's feature extractor does that. A split is held as one float16 canvas (clips, samples),
zeros after each clip's end, and each clip's length in samples beside it (FeatureSet.extra["lengths"]); a batch
(`take`) is {"x", "lengths"}, so the network (models/speech.py) builds its attention mask and pools over each clip's
own frames from the lengths. Training takes a random crop of at most `max_seconds` of each clip; evaluation and
predict.py take the whole clip (up to its central LONGEST_SAMPLES).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.features.base import FeatureParams, FeatureSet, FeatureType, VectorInput
from toolkit.features.encoders import zero_mean_unit_var
from toolkit.io.audio import ClipError
from toolkit.lazy import torch  # imported when first used: --help and the registry need no torch

LONGEST_SAMPLES = 960_000  # a longer clip keeps its central minute (at 16 kHz): a few long recordings cannot blow up memory
MIN_TRAIN_SECONDS = 1.0  # a training batch is at least this long (padding): transformers' time masks need frames


@dataclass(frozen=True)
class WaveformParams(FeatureParams):
    normalize: bool = True  # z-score each clip (the encoder's feature extractor's do_normalize)
    min_samples: int = 400  # the encoder's receptive field: a shorter clip gives it no frame


class WaveformInput(VectorInput):
    """How waveforms become a fine-tuned encoder's input: one zero-padded float16 canvas with each clip's length beside
    it, random crops in training."""

    kind = "audio"

    def __init__(self, sr: int) -> None:
        self.sr = sr

    def input_options(self, config) -> dict:
        return {"max_seconds": config.max_seconds}

    def check_options(self, options: dict, shape: list[int], source: str) -> None:
        seconds = options.get("max_seconds")
        if set(options) != {"max_seconds"} or isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not 0 < seconds < float("inf"):
            raise ToolkitError(f"{source}: waveform input options must be {{'max_seconds': seconds above 0}}, found "
                               f"{options}; restore the file")

    def window_seconds(self, options: dict) -> float:
        """Evaluation's length: a recording up to a minute is one window, the whole of it, as evaluation scores a clip."""
        return LONGEST_SAMPLES / self.sr

    def stack(self, features: list[np.ndarray], options: dict) -> dict[str, torch.Tensor]:
        longest = LONGEST_SAMPLES
        canvas = np.zeros((len(features), min(max(len(f) for f in features), longest)), np.float16)
        lengths = []
        for row, wave in zip(canvas, features):
            start = max(0, (len(wave) - longest) // 2)
            piece = wave[start : start + longest]
            row[: len(piece)] = piece
            lengths.append(len(piece))
        return {"x": torch.from_numpy(canvas), "lengths": torch.tensor(lengths, dtype=torch.long)}

    def speaker_normalize(self, features: list[np.ndarray]) -> list[np.ndarray]:
        raise ToolkitError("--normalize speaker is for stored features (mel, egemaps, compare, ssl), not the raw audio a "
                           "fine-tuned encoder takes; drop it")

    def fit_stats(self, x: torch.Tensor) -> dict | None:
        return None  # each clip is already z-scored on its own (normalize), as the encoder was trained

    def take(self, data: FeatureSet, index: torch.Tensor, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """{"x": zero-padded waveforms, "lengths": each one's samples}. Evaluation: the whole clips, padded to the
        longest of the batch. Training (generator given): a random crop of at most max_seconds of each clip, placed
        anywhere in it; the batch is as long as its longest crop."""
        index = index.to(data.x.device)
        x, lengths = data.x[index], data.extra["lengths"].to(data.x.device)[index]
        if generator is None:
            return {"x": x[:, : int(lengths.max())], "lengths": lengths}
        sr = self.sr
        crop = lengths.clamp(max=round(data.options["max_seconds"] * sr))
        width = max(int(crop.max()), min(round(MIN_TRAIN_SECONDS * sr), x.shape[1]))
        draws = torch.rand(len(x), generator=generator).to(x.device)  # the CPU generator keeps runs repeatable
        starts = (draws * (lengths - crop + 1)).long().clamp(max=lengths - crop)
        columns = starts[:, None] + torch.arange(width, device=x.device)
        inside = torch.arange(width, device=x.device)[None] < crop[:, None]
        picked = x.gather(1, columns.clamp(max=x.shape[1] - 1))
        return {"x": picked.masked_fill(~inside, 0), "lengths": crop}

    def augmentation(self, config):
        return None  # mixup of two clips would mix their padding too; the encoders bring their own time masks


class Waveform(FeatureType):
    name = "waveform"
    folder = "waveform"
    Params = WaveformParams
    stored = False

    def make_input(self) -> WaveformInput:
        return WaveformInput(self.params.sr)

    def extract(self, audio: np.ndarray) -> np.ndarray:
        params = self.params
        if len(audio) < params.min_samples:
            raise ClipError(f"too short for the encoder ({len(audio)} samples at {params.sr} Hz, it needs "
                            f"{params.min_samples}); leave it out")
        return zero_mean_unit_var(audio).astype(np.float32) if params.normalize else audio
