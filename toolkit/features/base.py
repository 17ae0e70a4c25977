"""The feature-type interface, and FeatureSet: one split's features in memory, batched without a DataLoader.

A feature type turns a clip's audio into one array (a log-mel image, an eGeMAPS vector, ...), stores it as one file
per clip (stage 2), stacks a split's arrays into one tensor (stage 3, predict.py, stage 5), and turns a batch of that
tensor into what a network takes. Everything that differs between types is a method of the type, in its own module;
everything here is shared.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Callable, ClassVar

import numpy as np
import pandas as pd
import torch

from toolkit.errors import ToolkitError
from toolkit.features.store import StoreItems, StoreRows
from toolkit.io.audio import MAX_RATE, MAX_SECONDS, MIN_RATE, ClipError, load_audio, parallel_map


DEFAULT_WINDOW_SECONDS = 4.0  # vector features: CREMA-D's clips are 1.3-5 s


def sample_windows(length: int, window: int, hop: int) -> list[tuple[int, int]]:
    """(start, end) of windows of `window` samples every `hop` covering `length` samples (one window if it fits)."""
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window + 1, max(hop, 1)))
    if starts[-1] != length - window:
        starts.append(length - window)
    return [(s, s + window) for s in starts]


def feature_file_name(clip: str, audio_hash: str, suffix: str) -> str:
    """Stage 2's name for a clip's feature file: {clip stem}.{hash of its audio}{suffix}. The base name of `clip` is
    used, so a name in a CSV never places a file outside the feature folder."""
    return f"{os.path.splitext(os.path.basename(clip))[0]}.{audio_hash}{suffix}"


def clip_of(path: str) -> str:
    """The clip a feature or audio file is of: its stem, without stage 2's audio hash."""
    stem = os.path.splitext(os.path.basename(path))[0]
    head, _, tail = stem.rpartition(".")
    return head if head and len(tail) == 10 and all(c in "0123456789abcdef" for c in tail) else stem


@dataclass(frozen=True)
class FeatureParams:
    """How a feature type's values are made. Subclasses are frozen dataclasses; `sr` is the rate audio is loaded at."""

    sr: int = 16000

    def tag(self) -> str:
        """The folder name of this parameter set: it changes whenever a parameter does, so stale files are never used."""
        return f"{self.tag_prefix()}_{self.digest()}"

    def tag_prefix(self) -> str:
        return f"sr{self.sr}"

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureParams":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def check(self, source: str) -> None:
        """A one-line ToolkitError (naming `source`: a flag set or a file) when the values cannot make sound features."""
        if not isinstance(self.sr, int) or not MIN_RATE <= self.sr <= MAX_RATE:
            raise ToolkitError(f"{source}: sample rate {self.sr!r} is outside {MIN_RATE}-{MAX_RATE} Hz; use e.g. 16000")


class FeatureType:
    """One kind of feature. A subclass sets the class attributes and implements extract; the other methods have
    defaults for vector features (one float array per clip, stored as .npy), which image types override."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "image": uint8 (N, 1, H, W) for the CNNs; "vector": float32 (N, ..., D) for linear/mlp
    folder: ClassVar[str]  # stage 2 writes {save_spec_path}/{folder}/{params tag}/{clip}{suffix}
    suffix: ClassVar[str]
    Params: ClassVar[type[FeatureParams]]
    stored: ClassVar[bool] = True  # False: no stage-2 files; made from each clip's audio when needed (fine-tuning)
    store_dtype: ClassVar[str] = "float32"  # the dtype of its values in its .npy files and the packed store (store.py)
    ndim: ClassVar[int] = 1  # vector types: the rank of one clip's array, and what it holds (for error messages)
    holds: ClassVar[str] = "values"

    @classmethod
    def column(cls) -> str:
        """The split CSVs' column that lists each clip's feature file; it also tells stage 3 the feature type."""
        return f"{cls.name}_file_path"

    # ---- stage 2: audio -> one file per clip
    @classmethod
    def add_args(cls, parser) -> None:
        """Stage-2 flags of this type (beyond --sr, which every type has)."""

    @classmethod
    def params_from_args(cls, args) -> FeatureParams:
        return cls.Params(sr=args.sr)

    @classmethod
    def extract(cls, audio: np.ndarray, params: FeatureParams) -> np.ndarray:
        """One clip's feature from its mono float32 waveform at params.sr."""
        raise NotImplementedError

    @classmethod
    def from_audio(cls, path: str, params: FeatureParams, max_seconds: float = MAX_SECONDS) -> np.ndarray:
        audio = load_audio(path, params.sr, max_seconds)
        try:
            return cls.extract(audio, params)
        except ClipError as e:  # extract's reasons name no file
            raise ClipError(f"{path}: {e}")

    @classmethod
    def window_seconds(cls, options: dict, params: FeatureParams) -> float:
        """How long a stretch of a long recording one prediction looks at (features of a whole training clip)."""
        return DEFAULT_WINDOW_SECONDS

    @classmethod
    def windows(cls, audio: np.ndarray, params: FeatureParams, window: float, hop: float) -> list[tuple[float, float, np.ndarray]]:
        """(start s, end s, feature) of the windows that cover a recording: the whole of it when it is no longer than
        `window` seconds, else one every `hop` seconds and a last one flush with the end."""
        return [(start / params.sr, end / params.sr, cls.extract(audio[start:end], params))
                for start, end in sample_windows(len(audio), round(window * params.sr), round(hop * params.sr))]

    @classmethod
    def workers(cls, requested: int) -> int:
        """How many processes may extract at once (a type whose extractor uses every core itself wants one)."""
        return requested

    @classmethod
    def warm_up(cls, params: FeatureParams) -> None:
        """Pay one-off start-up costs in the parent, so worker processes forked afterwards inherit them."""

    @classmethod
    def save(cls, feature: np.ndarray, path: str) -> None:
        save_npy(feature.astype(cls.store_dtype), path)  # in the store's dtype: a clip's file and its store row agree

    @classmethod
    def read(cls, path: str) -> np.ndarray:
        return load_npy(cls, path, ndim=cls.ndim, what=cls.holds)

    # ---- stage 3: a split's arrays -> one tensor -> network inputs
    @classmethod
    def check_options(cls, options: dict, shape: list[int], source: str) -> None:
        """A one-line ToolkitError when a run card's input options (and item shape) are not ones this type makes."""
        if options:
            raise ToolkitError(f"{source}: {cls.name} features take no input options, found {options}; restore the file")

    @classmethod
    def input_options(cls, config) -> dict:
        """What the run card records about how stored features become network inputs (read back by `stack`)."""
        return {}

    @classmethod
    def stack(cls, features: list[np.ndarray], options: dict) -> dict[str, torch.Tensor]:
        """{'x': one tensor of the split, plus any extra per-item tensors FeatureSet keeps (e.g. canvas, lengths)}."""
        return {"x": torch.from_numpy(np.stack(features).astype(np.float32))}

    @classmethod
    def stack_rows(cls, items: StoreItems, options: dict) -> dict:
        """`stack`'s lazy twin over a packed store: tensor-likes (store.StoreRows) whose rows are made by `stack` only
        when a batch indexes them, plus any small per-item tensors in full."""
        probe = cls.stack(items.get([0]), options)["x"]
        return {"x": StoreRows(items, lambda values: cls.stack(values, options)["x"], probe.shape[1:], probe.dtype)}

    @classmethod
    def speaker_normalize(cls, features: list[np.ndarray]) -> list[np.ndarray]:
        """One speaker's clips with the speaker's own mean and spread removed (z-scores per value; no labels used)."""
        stacked = np.stack(features).astype(np.float64)
        mean, std = stacked.mean(0), stacked.std(0)
        return [((f - mean) / np.maximum(std, 1e-6)).astype(np.float32) for f in features]

    @classmethod
    def fit_stats(cls, x: torch.Tensor) -> dict | None:
        """Input standardisation from the training split (per value mean and std), kept in the run card."""
        x = x.double()
        return {"mean": x.mean(0).tolist(), "std": x.std(0).clamp(min=1e-6).tolist()}

    @classmethod
    def eval_windows(cls, data: "FeatureSet") -> tuple[torch.Tensor, torch.Tensor] | None:
        """(windows, owner index) when some items are scored on several windows, else None (one input per item)."""
        return None

    @classmethod
    def take(cls, data: "FeatureSet", index: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The stored values of a batch; a type may draw something random for training (generator given)."""
        return data.x[index.to(data.x.device)]

    @classmethod
    def to_input(cls, x: torch.Tensor, device: torch.device, stats: dict | None) -> torch.Tensor:
        """A batch as the network takes it, on `device` (float)."""
        x = x.to(device, non_blocking=True).float()
        if stats:
            mean = torch.tensor(stats["mean"], dtype=torch.float32, device=device)
            std = torch.tensor(stats["std"], dtype=torch.float32, device=device)
            x = (x - mean) / std
        return x

    @classmethod
    def augmentation(cls, config, params: dict) -> Callable | None:
        """The training-time augmentation of this type for a TrainConfig (None: none applies)."""
        from toolkit.augmentation.augment import Augment

        return Augment(mixup=config.mixup) if config.mixup else None


@dataclass
class FeatureSet:
    """One split in memory: the stacked features, labels and the CSV rows they came from, in the same order."""

    x: torch.Tensor  # what the feature type stacked: uint8 images (N, 1, H, W) or float vectors (N, ..., D)
    labels: torch.Tensor  # (N,) int64; -1 where unlabeled
    paths: list[str]
    frame: pd.DataFrame
    feature: type[FeatureType]
    params: dict = None  # how the features were made (the type's Params as a dict; {} when unknown)
    options: dict = None  # how they became network inputs (FeatureType.input_options)
    stats: dict | None = None  # input standardisation, from the training split
    extra: dict = None  # per-item tensors of the type (mel, time_axis 'pad': the whole clips and their lengths)
    classes: list[str] | None = None  # what the label indices mean (None: unlabeled)
    audio: list[str] | None = None  # each item's audio file, where its CSV lists one (on-the-fly augmentation reads it)
    wave_augment: object = None  # training batches re-made from augmented audio (augment.OnTheFly); None: stored values

    def __post_init__(self) -> None:
        self.params = self.params or {}
        self.options = self.options or {}
        self.extra = self.extra or {}

    def __len__(self) -> int:
        return len(self.labels)

    def to_input(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        return self.feature.to_input(x, device, self.stats)

    def input_shape(self) -> list[int]:
        """The shape of one item as the network sees it (run card)."""
        return list(self.to_input(self.x[:1], torch.device("cpu")).shape[1:])


def subset(data: FeatureSet, index) -> FeatureSet:
    """The items at `index` (e.g. one cross-validation fold), as a new FeatureSet."""
    index = torch.as_tensor(np.array(index), dtype=torch.long)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t.select(index) if isinstance(t, StoreRows) else t[index.to(t.device)]  # a store's rows stay unread

    return FeatureSet(x=pick(data.x), labels=pick(data.labels), paths=[data.paths[i] for i in index.tolist()],
                      frame=data.frame.iloc[index.numpy()].reset_index(drop=True), feature=data.feature,
                      params=data.params, options=data.options, stats=data.stats,
                      extra={k: pick(v) for k, v in data.extra.items()}, classes=data.classes,
                      audio=[data.audio[i] for i in index.tolist()] if data.audio is not None else None)



def save_npy(values: np.ndarray, path: str) -> None:
    """One clip's array as a .npy file, atomically (no pickles: allow_pickle=False)."""
    from toolkit.fileio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, values, allow_pickle=False)


def load_npy(feature: type[FeatureType], path: str, ndim: int, what: str) -> np.ndarray:
    """A stored .npy of `feature` as float32: an array of `ndim` finite floats, else a ClipError naming the file."""
    if not os.path.isfile(path):  # a FIFO would block forever
        what = "not a regular file" if os.path.exists(path) else "feature file not found"
        raise ClipError(f"{path}: {what}; re-run generate_mel_spectrograms.py --features {feature.name}")
    try:
        values = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ClipError(f"{path}: not a readable .npy file ({type(e).__name__}); delete it and re-run stage 2")
    if values.ndim != ndim or values.dtype.kind != "f" or not np.isfinite(values).all():
        raise ClipError(f"{path}: not {feature.name} {what} (shape {values.shape}, dtype {values.dtype}, or non-finite); "
                        f"delete it and re-run stage 2")
    return values.astype(np.float32)


def _error_text(audio_path: str, e: Exception) -> str:
    return str(e) if isinstance(e, ToolkitError) else f"{audio_path}: {type(e).__name__}: {e}"


def feature_file_job(job: tuple[type[FeatureType], str, str, FeatureParams, float]) -> tuple[str, str | None]:
    """Stage 2's worker: make one clip's feature file unless it exists. Returns (file path, error or None).

    A clip that cannot be used is an error returned (reported, the run goes on); a file that cannot be written
    raises (OutputError): the disk or folder is at fault, not the clip, and the stage must stop.
    """
    feature, audio_path, out_path, params, max_seconds = job
    if os.path.exists(out_path):
        return out_path, None
    try:
        value = feature.from_audio(audio_path, params, max_seconds)
    except Exception as e:  # a failing clip never kills a long run
        return out_path, _error_text(audio_path, e)
    feature.save(value, out_path)
    return out_path, None


def feature_job(job: tuple[type[FeatureType], str, FeatureParams]) -> tuple[np.ndarray | None, str | None]:
    """Worker: one clip's feature in memory, or (None, message) when the clip cannot be used."""
    feature, audio_path, params = job
    try:
        return feature.from_audio(audio_path, params), None
    except Exception as e:  # a failing clip never kills a long run
        return None, _error_text(audio_path, e)


def features_from_audio(feature: type[FeatureType], paths: list[str], params: FeatureParams,
                        workers: int = 1) -> list[tuple[np.ndarray | None, str | None]]:
    """Features of many clips made on the fly (no files written): (feature, None) or (None, error) each."""
    feature.warm_up(params)
    return list(parallel_map(feature_job, [(feature, path, params) for path in paths], feature.workers(workers),
                             desc=feature.name))
