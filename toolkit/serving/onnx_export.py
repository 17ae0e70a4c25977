"""Export a trained model to an ONNX folder (toolkit/serving/onnx_backend.py reads it) and check that it gives the same logits.

The network is exported with PyTorch's TorchScript-based exporter (torch.onnx.export(dynamo=False)): it needs only the
`onnx` package, works offline, and handles every image and vector model of the registry. Its second output is the
embedding the out-of-domain distance is measured on (the input of the last Linear layer, caught by a forward hook
while tracing). The check runs the card's own test clips through both paths from the audio on: the toolkit's
features and the torch network, and the export's front end and onnxruntime.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings

import numpy as np
import torch
from torch import nn

from toolkit.errors import ToolkitError
from toolkit.evaluation.domain import embedding_layer
from toolkit.fileio import read_csv, resolve_from_csv, write_json
from toolkit.io.audio import load_audio
from toolkit.runcard import RunCard
from toolkit.serving.onnx_backend import CARD, FILTERBANK, FORMAT, FRONTEND, INPUT_MEAN, INPUT_STD, MODEL, STFT_WINDOW, OnnxNetwork

OPSET = 17
TOLERANCE = 1e-4  # largest difference of a logit between torch and onnxruntime that the export accepts


class WithEmbedding(nn.Module):
    """The network, returning (logits, embedding): what an exported model computes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.caught = model, []
        embedding_layer(model).register_forward_hook(lambda module, inputs, output: self.caught.append(inputs[0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.caught.clear()
        logits = self.model(x)
        return logits, self.caught[-1]


def check_exportable(card: RunCard, source: str) -> None:
    if card.feature.kind == "audio":
        raise ToolkitError(f"{source}: {card.model} is a speech encoder fine-tuned on the waveform; its evaluation pools "
                           f"each clip in chunks, which this exporter does not express yet; use predict.py --backend torch")


def front_end_files(card: RunCard, folder: str) -> dict:
    """Write the .npy files the front end needs and return frontend.json's content."""
    from toolkit.features.mel import mel_basis

    params = card.feature_params
    spec = {"format": FORMAT, "feature": card.features["type"], "params": params.to_dict(),
            "input": {"kind": card.input["kind"], **card.input_options, "shape": card.input["shape"]},
            "window_seconds": card.feature.window_seconds(card.input_options),
            "classes": card.classes, "category": card.category, "temperature": card.temperature,
            "normalize": card.normalize, "outputs": {"logits": "(N, classes)", "embedding": "(N, D): input of the last Linear layer"}}
    if card.features["type"] == "mel":
        import librosa

        np.save(os.path.join(folder, FILTERBANK), mel_basis(params), allow_pickle=False)
        np.save(os.path.join(folder, STFT_WINDOW), librosa.filters.get_window("hann", params.n_fft, fftbins=True),
                allow_pickle=False)
        spec["files"] = {"filterbank": FILTERBANK, "stft_window": STFT_WINDOW}
        spec["image"] = "uint8 grey levels (low frequencies at the bottom) / 255, repeated over 3 channels"
    stats = card.features.get("stats")
    spec["standardized"] = bool(stats)
    if stats:
        np.save(os.path.join(folder, INPUT_MEAN), np.asarray(stats["mean"], np.float32), allow_pickle=False)
        np.save(os.path.join(folder, INPUT_STD), np.asarray(stats["std"], np.float32), allow_pickle=False)
        spec["files"] = {"mean": INPUT_MEAN, "std": INPUT_STD}
    return spec


def test_clips(card: RunCard, source: str, limit: int | None) -> list[str]:
    """The audio files of the card's test split (its first `limit`)."""
    csv = (card.split.get("csvs") or {}).get("test")
    if not csv or not os.path.isfile(csv):
        raise ToolkitError(f"{source}: its test CSV {csv!r} is not here to check the export on; pass --check_audio FILES")
    table = read_csv(csv, ["Audio_file_path"])
    clips = [resolve_from_csv(str(p), csv) for p in table["Audio_file_path"]]
    return clips[:limit] if limit else clips


def largest_difference(model: nn.Module, card: RunCard, network: OnnxNetwork, clips: list[str]) -> tuple[float, int]:
    """(largest |torch logit - onnxruntime logit| over every window of `clips`, windows compared)."""
    from tqdm import tqdm

    from toolkit.serving.inference import View, model_inputs
    from toolkit.training.engine import predict_logits

    torch_view, onnx_view = View.of(card), View.of(network.card)
    worst, count = 0.0, 0
    for clip in tqdm(clips, desc="checking", unit="clip", disable=len(clips) < 10):
        audio = load_audio(clip, card.feature_params.sr)
        torch_features = [f for _, _, f in torch_view.feature.windows(audio, torch_view.window, torch_view.hop)]
        onnx_features = [f for _, _, f in onnx_view.feature.windows(audio, onnx_view.window, onnx_view.hop)]
        expected = predict_logits(model, model_inputs(card, torch_features), 64, torch.device("cpu")).numpy()
        got, _ = network.outputs(onnx_features, 64)
        worst, count = max(worst, float(np.abs(expected - got).max())), count + len(got)
    return worst, count


def export(model: "torch.nn.Module", card: RunCard, pt_path: str, out: str, clips: list[str] | None = None,
           check_limit: int | None = None, threads: int | None = None) -> tuple[float, int]:
    """Write `out` (replacing an earlier export atomically) and check it; returns (largest logit difference, windows).
    `model` and `card` are the trained network on the CPU and its card (models.load_trained_model(pt_path))."""
    check_exportable(card, pt_path)
    if card.normalize == "speaker":
        raise ToolkitError(f"{pt_path}: trained with --normalize speaker, which needs every file's speaker at prediction; "
                           f"the export does not carry that step yet: use predict.py --backend torch --speakers")
    clips = clips or test_clips(card, pt_path, check_limit)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        wrapped = WithEmbedding(model).eval()
        example = torch.zeros(2, *card.input["shape"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice: chosen on purpose (above)
            torch.onnx.export(wrapped, (example,), os.path.join(work, MODEL), dynamo=False, opset_version=OPSET,
                              input_names=["x"], output_names=["logits", "embedding"],
                              dynamic_axes={"x": {0: "windows"}, "logits": {0: "windows"}, "embedding": {0: "windows"}})
        write_json(front_end_files(card, work), os.path.join(work, FRONTEND))
        card.save(os.path.join(work, CARD))
        network = OnnxNetwork(work, threads)
        worst, count = largest_difference(model, card, network, clips)
        if not worst <= TOLERANCE:
            raise ToolkitError(f"{pt_path}: onnxruntime's logits differ from torch's by up to {worst:.2g} (> {TOLERANCE:g}) "
                               f"on {count} window(s) of {len(clips)} clip(s); the export was not written")
        if os.path.isdir(out):
            shutil.rmtree(out)
        os.replace(work, out)
    finally:
        if os.path.isdir(work):
            shutil.rmtree(work, ignore_errors=True)
    return worst, count

