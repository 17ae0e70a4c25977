"""Feature objects, and FeatureSet: one split's features in memory, batched without a DataLoader.

A feature object is made with its settings (`Mel(MelParams(...))`, `get_feature("egemaps").from_dict(card_params)`):
it is the extractor (params, digest, to_dict/from_dict for the run card; extract turns a clip's audio into one array),
it has a storage (one file per clip: NpyFiles here, PngImages for images) and an input adapter of its kind that turns
a split's arrays into what a network takes (VectorInput here; TimeFrequencyInput in timefreq.py, the waveform's in
waveform.py). Everything that differs between features is in its own module; everything here is shared.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Callable, ClassVar

import numpy as np
import pandas as pd

from toolkit.errors import ToolkitError
from toolkit.features.store import StoreItems, StoreRows
from toolkit.io.audio import MAX_RATE, MAX_SECONDS, MIN_RATE, ClipError, load_audio, parallel_map
from toolkit.io.windows import sample_windows
from toolkit.lazy import torch  # imported when first used: --help and the registry need no torch


DEFAULT_WINDOW_SECONDS = 4.0  # vector features: CREMA-D's clips are 1.3-5 s


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


class NpyFiles:
    """Storage of float arrays: one .npy per clip, in `dtype` (a clip's file and its packed-store row agree)."""

    suffix = ".npy"

    def __init__(self, feature: str, dtype: str = "float32", ndim: int = 1, holds: str = "values") -> None:
        self.feature, self.dtype, self.ndim, self.holds = feature, dtype, ndim, holds  # holds: for error messages

    def save(self, feature: np.ndarray, path: str) -> None:
        save_npy(feature.astype(self.dtype), path)

    def read(self, path: str) -> np.ndarray:
        return load_npy(self.feature, path, ndim=self.ndim, what=self.holds)


class VectorInput:
    """How stored vectors (N, ..., D) become network inputs: stacked as float32, standardised with the training split's
    per-value mean and std (kept in the run card); a long recording is scored on windows of DEFAULT_WINDOW_SECONDS."""

    kind = "vector"

    def window_seconds(self, options: dict) -> float:
        """How long a stretch of a long recording one prediction looks at (features of a whole training clip)."""
        return DEFAULT_WINDOW_SECONDS

    def windows(self, feature: "FeatureType", audio: np.ndarray, window: float, hop: float) -> list:
        """(start s, end s, feature) of the windows that cover a recording (toolkit/io/windows.py)."""
        sr = feature.params.sr
        return [(start / sr, end / sr, feature.extract(audio[start:end]))
                for start, end in sample_windows(len(audio), round(window * sr), round(hop * sr))]

    def check_options(self, options: dict, shape: list[int], source: str) -> None:
        """A one-line ToolkitError when a run card's input options (and item shape) are not ones this kind makes."""
        if options:
            raise ToolkitError(f"{source}: {self.kind} features take no input options, found {options}; restore the file")

    def input_options(self, config) -> dict:
        """What the run card records about how stored features become network inputs (read back by `stack`)."""
        return {}

    def stack(self, features: list[np.ndarray], options: dict) -> dict[str, torch.Tensor]:
        """{'x': one tensor of the split, plus any extra per-item values FeatureSet keeps (e.g. canvas, lengths)}."""
        return {"x": torch.from_numpy(np.stack(features).astype(np.float32))}

    def stack_rows(self, items: StoreItems, options: dict) -> dict:
        """`stack`'s lazy twin over a packed store: tensor-likes (store.StoreRows) whose rows are made by `stack` only
        when a batch indexes them, plus any small per-item tensors in full."""
        probe = self.stack(items.get([0]), options)["x"]
        return {"x": StoreRows(items, lambda values: self.stack(values, options)["x"], probe.shape[1:], probe.dtype)}

    def speaker_normalize(self, features: list[np.ndarray]) -> list[np.ndarray]:
        """One speaker's clips with the speaker's own mean and spread removed (z-scores per value; no labels used)."""
        stacked = np.stack(features).astype(np.float64)
        mean, std = stacked.mean(0), stacked.std(0)
        return [((f - mean) / np.maximum(std, 1e-6)).astype(np.float32) for f in features]

    def fit_stats(self, x: torch.Tensor) -> dict | None:
        """Input standardisation from the training split (per value mean and std), kept in the run card."""
        x = x.double()
        return {"mean": x.mean(0).tolist(), "std": x.std(0).clamp(min=1e-6).tolist()}

    def eval_windows(self, data: "FeatureSet") -> tuple[torch.Tensor, torch.Tensor] | None:
        """(windows, owner index) when some items are scored on several windows, else None (one input per item)."""
        return None

    def take(self, data: "FeatureSet", index: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The stored values of a batch; an adapter may draw something random for training (generator given)."""
        return data.x[index.to(data.x.device)]

    def to_input(self, x: torch.Tensor, device: torch.device, stats: dict | None) -> torch.Tensor:
        """A batch as the network takes it, on `device` (float)."""
        x = x.to(device, non_blocking=True).float()
        if stats:
            mean = torch.tensor(stats["mean"], dtype=torch.float32, device=device)
            std = torch.tensor(stats["std"], dtype=torch.float32, device=device)
            x = (x - mean) / std
        return x

    def augmentation(self, config) -> Callable | None:
        """The training-time augmentation of this kind for a TrainConfig (None: none applies)."""
        from toolkit.augmentation.augment import Augment

        return Augment(mixup=config.mixup) if config.mixup else None


class PerItem:
    """Values of any shape per item (None where an item has none), kept in FeatureSet.extra beside its tensors:
    subsets pick from it, moving to a device leaves it on the host (e.g. the whole images of clips too long for the
    canvas, which evaluation cuts into windows)."""

    def __init__(self, items: list) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]

    def select(self, index: torch.Tensor) -> "PerItem":
        return PerItem([self.items[i] for i in index.tolist()])

    def to(self, *args, **kwargs) -> "PerItem":
        return self

    def numel(self) -> int:
        return sum(v.size for v in self.items if v is not None)

    def element_size(self) -> int:
        return 1


class FeatureType:
    """One feature with its settings: `Feature(params)` (default: the Params' defaults). A subclass sets the class
    attributes and implements extract; make_storage and make_input choose its storage and input adapter (defaults:
    float32 .npy files and vectors)."""

    name: ClassVar[str]
    folder: ClassVar[str]  # stage 2 writes {save_spec_path}/{folder}/{params tag}/{clip}{suffix}
    Params: ClassVar[type[FeatureParams]] = FeatureParams
    stored: ClassVar[bool] = True  # False: no stage-2 files; made from each clip's audio when needed (fine-tuning)

    def __init__(self, params: FeatureParams | None = None) -> None:
        self.params = params if params is not None else self.Params()
        self.storage = self.make_storage()
        self.input = self.make_input()

    def make_storage(self) -> NpyFiles:
        return NpyFiles(self.name)

    def make_input(self) -> VectorInput:
        return VectorInput()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"

    def __eq__(self, other) -> bool:  # equal settings, one feature: models trained on them share one extraction
        return type(other) is type(self) and other.params == self.params

    def __hash__(self) -> int:
        return hash((type(self), self.params))

    @property
    def kind(self) -> str:
        """'image': uint8 (N, 1, H, W) for the CNNs; 'vector': float32 (N, ..., D) for linear/mlp; 'audio'."""
        return self.input.kind

    @classmethod
    def column(cls) -> str:
        """The split CSVs' column that lists each clip's feature file; it also tells stage 3 the feature type."""
        return f"{cls.name}_file_path"

    # ---- settings: flags, the run card
    @classmethod
    def add_args(cls, parser) -> None:
        """Stage-2 flags of this feature (beyond --sr, which every feature has)."""

    @classmethod
    def params_from_args(cls, args) -> FeatureParams:
        return cls.Params(sr=args.sr)

    @classmethod
    def from_args(cls, args) -> "FeatureType":
        return cls(cls.params_from_args(args))

    @classmethod
    def from_dict(cls, d: dict | None) -> "FeatureType":
        """The feature a run card's or params.json's features.params describe (older cards: missing values default)."""
        return cls(cls.Params.from_dict(d or {}))

    def to_dict(self) -> dict:
        return self.params.to_dict()

    def digest(self) -> str:
        return self.params.digest()

    def tag(self) -> str:
        return self.params.tag()

    # ---- audio -> one array per clip
    def extract(self, audio: np.ndarray) -> np.ndarray:
        """One clip's feature from its mono float32 waveform at params.sr."""
        raise NotImplementedError

    def from_audio(self, path: str, max_seconds: float = MAX_SECONDS) -> np.ndarray:
        audio = load_audio(path, self.params.sr, max_seconds)
        try:
            return self.extract(audio)
        except ClipError as e:  # extract's reasons name no file
            raise ClipError(f"{path}: {e}")

    def window_seconds(self, options: dict) -> float:
        """How long a stretch of a long recording one prediction looks at (the network's window)."""
        return self.input.window_seconds(options)

    def windows(self, audio: np.ndarray, window: float, hop: float) -> list[tuple[float, float, np.ndarray]]:
        """(start s, end s, feature) of the windows that cover a recording: the whole of it when it is no longer than
        `window` seconds, else one every `hop` seconds and a last one flush with the end (toolkit/io/windows.py)."""
        return self.input.windows(self, audio, window, hop)

    def workers(self, requested: int) -> int:
        """How many processes may extract at once (a feature whose extractor uses every core itself wants one)."""
        return requested

    def warm_up(self) -> None:
        """Pay one-off start-up costs in the parent, so worker processes forked afterwards inherit them."""


@dataclass
class FeatureSet:
    """One split in memory: the stacked features, labels and the CSV rows they came from, in the same order."""

    x: torch.Tensor  # what the feature's input adapter stacked: uint8 images (N, 1, H, W) or vectors (N, ..., D)
    labels: torch.Tensor  # (N,) int64; -1 where unlabeled
    paths: list[str]
    frame: pd.DataFrame
    feature: FeatureType  # the feature object, with the settings the features were made with
    params: dict = None  # those settings as the run card records them (feature.to_dict(); {} when unknown)
    options: dict = None  # how they became network inputs (feature.input.input_options)
    stats: dict | None = None  # input standardisation, from the training split
    extra: dict = None  # per-item values of the input adapter (images, time_axis 'pad': the whole clips, their lengths)
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
        return self.feature.input.to_input(x, device, self.stats)

    def input_shape(self) -> list[int]:
        """The shape of one item as the network sees it (run card)."""
        return list(self.to_input(self.x[:1], torch.device("cpu")).shape[1:])


def subset(data: FeatureSet, index) -> FeatureSet:
    """The items at `index` (e.g. one cross-validation fold), as a new FeatureSet."""
    index = torch.as_tensor(np.array(index), dtype=torch.long)

    def pick(t: torch.Tensor) -> torch.Tensor:
        if isinstance(t, (StoreRows, PerItem)):
            return t.select(index)  # a store's rows stay unread
        return t[index.to(t.device)]

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


def load_npy(feature: str, path: str, ndim: int, what: str) -> np.ndarray:
    """A stored .npy of the feature named `feature` as float32: an array of `ndim` finite floats, else a ClipError
    naming the file."""
    if not os.path.isfile(path):  # a FIFO would block forever
        what = "not a regular file" if os.path.exists(path) else "feature file not found"
        raise ClipError(f"{path}: {what}; re-run generate_mel_spectrograms.py --features {feature}")
    try:
        values = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ClipError(f"{path}: not a readable .npy file ({type(e).__name__}); delete it and re-run stage 2")
    if values.ndim != ndim or values.dtype.kind != "f" or not np.isfinite(values).all():
        raise ClipError(f"{path}: not {feature} {what} (shape {values.shape}, dtype {values.dtype}, or non-finite); "
                        f"delete it and re-run stage 2")
    return values.astype(np.float32)


def _error_text(audio_path: str, e: Exception) -> str:
    return str(e) if isinstance(e, ToolkitError) else f"{audio_path}: {type(e).__name__}: {e}"


def feature_file_job(job: tuple[FeatureType, str, str, float]) -> tuple[str, str | None]:
    """Stage 2's worker: make one clip's feature file unless it exists. Returns (file path, error or None).

    A clip that cannot be used is an error returned (reported, the run goes on); a file that cannot be written
    raises (OutputError): the disk or folder is at fault, not the clip, and the stage must stop.
    """
    feature, audio_path, out_path, max_seconds = job
    if os.path.exists(out_path):
        return out_path, None
    try:
        value = feature.from_audio(audio_path, max_seconds)
    except Exception as e:  # a failing clip never kills a long run
        return out_path, _error_text(audio_path, e)
    feature.storage.save(value, out_path)
    return out_path, None


def feature_job(job: tuple[FeatureType, str, float]) -> tuple[np.ndarray | None, str | None]:
    """Worker: one clip's feature in memory (of at most max_seconds of its audio), or (None, message) when the clip
    cannot be used."""
    feature, audio_path, max_seconds = job
    try:
        return feature.from_audio(audio_path, max_seconds), None
    except Exception as e:  # a failing clip never kills a long run
        return None, _error_text(audio_path, e)


def features_from_audio(feature: FeatureType, paths: list[str], workers: int = 1) -> list[tuple[np.ndarray | None, str | None]]:
    """Features of many clips made on the fly (no files written): (feature, None) or (None, error) each."""
    feature.warm_up()
    return list(parallel_map(feature_job, [(feature, path, MAX_SECONDS) for path in paths], feature.workers(workers),
                             desc=feature.name))
