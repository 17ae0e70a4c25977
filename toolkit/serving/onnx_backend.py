"""Run an exported model (export_onnx.py's folder) with onnxruntime: predict.py --backend onnx and the Python API.

An export folder holds everything a recording needs on its way to class probabilities, as plain files:

    model.onnx           the network: input `x` (N, ...) float32 as the network sees it -> `logits` (N, classes) and
                         `embedding` (N, D), the input of its last Linear layer (the out-of-domain distance)
    frontend.json        the feature type and its parameters, the network input's layout, the window length, classes,
                         calibration temperature and the files below (FORMAT says which version wrote it)
    mel_filterbank.npy   mel models: the (n_mels, 1 + n_fft/2) filterbank and stft_window.npy the STFT window
    input_mean.npy, input_std.npy   vector models: the input standardisation of the training split
    card.json            the run card, as training wrote it (metrics, split, the out-of-domain summary `domain`)

Mel models run on numpy, librosa and onnxruntime alone: this module and everything it imports leave torch out (a
test checks). Other feature types (eGeMAPS, speech-encoder states) make their features with the toolkit's own code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.evaluation.domain import check_domain
from toolkit.fileio import read_json
from toolkit.io.audio import MAX_RATE, MIN_RATE, load_audio
from toolkit.io.melspec import check_mel_params, log_mel, mel_image, prepare_image, window_seconds
from toolkit.io.windows import image_windows
from toolkit.runcard import RunCard, read_card

FORMAT = 1
MODEL, FRONTEND, CARD = "model.onnx", "frontend.json", "card.json"
FILTERBANK, STFT_WINDOW, INPUT_MEAN, INPUT_STD = "mel_filterbank.npy", "stft_window.npy", "input_mean.npy", "input_std.npy"


@dataclass(frozen=True)
class ExportedMelParams:
    """MelParams' values, read from frontend.json (the numbers of toolkit/io/melspec.py take either)."""

    sr: int
    n_fft: int
    hop_length: int
    n_mels: int
    top_db: float
    db_ref: str
    mel_scale: str
    pad_mode: str


class ExportedMel:
    """The Mel feature's audio -> image steps with the export's own filterbank and STFT window: a feature object
    (extract, windows, window_seconds, as toolkit/features' Mel) made of numpy alone."""

    name, kind = "mel", "image"

    def __init__(self, filterbank: np.ndarray, window: np.ndarray, params: ExportedMelParams) -> None:
        self.filterbank, self.window, self.params = filterbank, window, params
        self.seconds_per_frame = params.hop_length / params.sr

    # Equal by value, as the toolkit's feature types are: predict.py's decoding workers send back their copy, and a
    # file's windows are looked up by the View (feature, window, hop) they were made for.
    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ExportedMel) and self.params == other.params
                and np.array_equal(self.filterbank, other.filterbank) and np.array_equal(self.window, other.window))

    def __hash__(self) -> int:
        return hash(self.params)

    def extract(self, audio: np.ndarray) -> np.ndarray:
        return mel_image(audio, self.params, self.filterbank, self.window)

    def windows(self, audio: np.ndarray, window: float, hop: float) -> list:
        return image_windows(self.extract(audio), len(audio) / self.params.sr, self.seconds_per_frame, window, hop)

    def from_audio(self, path: str) -> np.ndarray:
        return self.extract(load_audio(path, self.params.sr))

    def warm_up(self) -> None:
        log_mel(np.ones(self.params.n_fft, np.float32), self.params, self.filterbank, self.window)

    def window_seconds(self, options: dict) -> float:
        return window_seconds(options, self.seconds_per_frame)


class ExportedCard(RunCard):
    """An export's run card: its feature type is the export's own front end where it has one (mel), so everything
    that reads a card (toolkit.serving.inference's View.of, classify) runs the export's steps."""

    front_end = None

    @property
    def feature(self):
        return self.front_end or RunCard.feature.fget(self)


def read_npy(folder: str, name: str, shape: tuple | None = None) -> np.ndarray:
    """A float array of the export (no pickles), of `shape` where given, else a one-line error naming the file."""
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise ToolkitError(f"{path}: missing from the export folder; re-run export_onnx.py")
    try:
        values = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ToolkitError(f"{path}: not a readable .npy file ({type(e).__name__}); re-run export_onnx.py")
    if values.dtype.kind != "f" or not np.isfinite(values).all() or (shape is not None and values.shape != shape):
        raise ToolkitError(f"{path}: not the export's array (shape {values.shape}, dtype {values.dtype}, expected "
                           f"{shape}, finite floats); re-run export_onnx.py")
    return values


def export_folder(path: str) -> str:
    """The export folder `path` names: the folder itself, its model.onnx, or a trained .pt whose export sits beside it
    ({stem}_onnx/, export_onnx.py's default)."""
    if path.endswith(".pt"):
        path = os.path.splitext(path)[0] + "_onnx"
    elif os.path.basename(path) == MODEL:
        path = os.path.dirname(path) or "."
    if not os.path.isfile(os.path.join(path, FRONTEND)):
        raise ToolkitError(f"{path}: not an ONNX export folder (no {FRONTEND}); make one with "
                           f"python export_onnx.py --model_file MODEL.pt, or use --backend torch")
    return path


class OnnxNetwork:
    """An exported model loaded for inference: its run card, how audio becomes its input, and the onnxruntime session.

    Its `card` reads as a run card whose feature type is the export's front end; `outputs(features)` turns features
    (one per window) into (logits, embeddings) as float numpy arrays."""

    def __init__(self, folder: str, threads: int | None = None) -> None:
        folder = export_folder(folder)
        self.folder = folder
        source = os.path.join(folder, FRONTEND)
        spec = read_json(source, "ONNX export front end", "re-run export_onnx.py")
        if not isinstance(spec, dict) or spec.get("format") != FORMAT:
            raise ToolkitError(f"{source}: front end format {spec.get('format') if isinstance(spec, dict) else None!r} is "
                               f"not this toolkit's ({FORMAT}); re-export the model with this toolkit")
        self.card = read_exported_card(os.path.join(folder, CARD))
        self.spec = spec
        self.mean = self.std = None
        self.front_end, self.params = self._front_end(spec, source)
        if self.front_end.kind == "image":
            self.card.front_end = self.front_end
        self.session = make_session(os.path.join(folder, MODEL), threads)

    def _front_end(self, spec: dict, source: str):
        feature, options = spec.get("feature"), spec.get("input")
        window = spec.get("window_seconds")
        if not isinstance(options, dict) or not isinstance(window, (int, float)) or isinstance(window, bool):
            raise ToolkitError(f"{source}: 'input' or 'window_seconds' is not what export_onnx.py writes; re-run it")
        if feature == "mel":
            try:
                params = ExportedMelParams(**{f.name: spec["params"][f.name] for f in fields(ExportedMelParams)})
            except (KeyError, TypeError) as e:
                raise ToolkitError(f"{source}: mel parameters incomplete ({e}); re-run export_onnx.py")
            if not isinstance(params.sr, int) or not MIN_RATE <= params.sr <= MAX_RATE:
                raise ToolkitError(f"{source}: sample rate {params.sr!r} is outside {MIN_RATE}-{MAX_RATE} Hz; re-run export_onnx.py")
            check_mel_params(params, source)
            size = options.get("image_size")
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) and 8 <= n <= 4096 for n in size)) \
                    or options.get("time_axis") not in ("resize", "pad"):
                raise ToolkitError(f"{source}: input image_size/time_axis {size!r}/{options.get('time_axis')!r} are not an "
                                   f"image layout; re-run export_onnx.py")
            self.options = options
            front = ExportedMel(read_npy(self.folder, FILTERBANK, (params.n_mels, params.n_fft // 2 + 1)),
                                read_npy(self.folder, STFT_WINDOW, (params.n_fft,)), params)
            if abs(window - front.window_seconds(options)) > 1e-6:
                raise ToolkitError(f"{source}: window_seconds does not match the image layout; re-run export_onnx.py")
            return front, params
        # Other feature types: the toolkit's own extractor (imports torch; eGeMAPS also opensmile), and its card checks
        read_card(os.path.join(self.folder, CARD))
        feature_type = self.card.feature
        self.options = self.card.input_options
        if spec.get("standardized"):
            shape = tuple(self.card.input["shape"])
            self.mean, self.std = read_npy(self.folder, INPUT_MEAN, shape), read_npy(self.folder, INPUT_STD, shape)
        return feature_type, self.card.feature_params

    def inputs(self, features: list[np.ndarray]) -> np.ndarray:
        """Features (one per window) -> the float32 batch the network takes, as the toolkit's stack + to_input make it."""
        if self.front_end.kind == "image":
            size, time_axis, frames = tuple(self.options["image_size"]), self.options["time_axis"], self.options["frames"]
            images = np.stack([prepare_image(f, size, time_axis, frames) for f in features])
            x = images.astype(np.float32) / np.float32(255)
            return np.ascontiguousarray(np.broadcast_to(x, (len(x), 3, *x.shape[2:])))
        x = np.stack(features).astype(np.float32)
        if self.mean is not None:
            x = (x - self.mean.astype(np.float32)) / self.std.astype(np.float32)
        return x

    def outputs(self, features: list[np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(logits, embeddings) of the windows' features, `batch_size` windows at a time."""
        logits, embeddings = [], []
        for start in range(0, len(features), batch_size):
            out = self.session.run(["logits", "embedding"], {"x": self.inputs(features[start : start + batch_size])})
            logits.append(out[0])
            embeddings.append(out[1])
        if not logits:
            return np.zeros((0, len(self.card.classes)), np.float32), np.zeros((0, 0), np.float32)
        return np.concatenate(logits), np.concatenate(embeddings)


def make_session(path: str, threads: int | None = None):
    """An onnxruntime CPU session for `path` (a one-line error when onnxruntime is missing or the file is not a model)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ToolkitError("onnxruntime is not installed: pip install onnxruntime (or use --backend torch)")
    if not os.path.isfile(path):
        raise ToolkitError(f"{path}: missing from the export folder; re-run export_onnx.py")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initializers are not the user's business
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ToolkitError(f"{path}: onnxruntime cannot load it ({type(e).__name__}); re-run export_onnx.py")


def read_exported_card(path: str) -> ExportedCard:
    """The run card of an export, checked for what inference reads, without importing the feature types (torch)."""
    d = read_json(path, "run card", "re-run export_onnx.py")
    names = {f.name for f in fields(RunCard)}
    if not isinstance(d, dict) or any(k not in d for k in ("model", "category", "classes", "features", "input")):
        raise ToolkitError(f"{path}: not a run card written by this toolkit; re-run export_onnx.py")
    card = ExportedCard(**{k: v for k, v in d.items() if k in names})
    classes = card.classes
    if not isinstance(classes, list) or len(classes) < 2 or len(set(map(str, classes))) != len(classes):
        raise ToolkitError(f"{path}: 'classes' must list at least 2 distinct class names, got {classes!r}; re-run export_onnx.py")
    temperature = (card.calibration or {}).get("temperature", 1.0) if isinstance(card.calibration, (dict, type(None))) else None
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 < temperature < 1000:
        raise ToolkitError(f"{path}: calibration temperature {temperature!r} is not a positive number; re-run export_onnx.py")
    check_domain(card.domain, path)
    return card
