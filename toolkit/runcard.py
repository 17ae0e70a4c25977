"""The run card: the one versioned record, written as JSON beside every trained .pt, of what a run made and how to
use it. Every training stage writes it and every reader loads it through `read_card` (predict.py, stage 5, stage 4c,
summarize_runs.py, cross-validation), so nobody guesses keys. Cards written before the schema existed (no "schema"
key: the JSON sidecars of earlier versions) still load; a card from a newer toolkit is a one-line error.
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from toolkit.errors import ToolkitError
from toolkit.fileio import read_json, write_json
from toolkit.precision import COMPUTED
from toolkit.schemas import STRICT, InitDetail, Size, check, first_non_finite, params_schema, schema_of

SCHEMA = 1
INITS = ("scratch", "imagenet", "autoencoder", "pseudo-label", "pretrained-speech")
AUTOENCODER = "autoencoder"  # stage 4a's card: a model with no classes (metrics: its reconstruction loss)
CV_FOLD = re.compile(r"_cv[/\\]fold\d+[/\\]")  # toolkit.training.crossval puts each fold's run in {stem}_cv/fold{i}/


@dataclass
class RunCard:
    model: str  # a models.MODELS name
    category: str  # the label column it classifies
    classes: list[str]  # label index = position
    features: dict  # {"type": a toolkit.features name, "params": how they were made, "stats": input standardisation}
    input: dict  # {"kind": "image"|"vector", "shape": one item as the network sees it, + the type's input options}
    model_args: dict = field(default_factory=dict)  # the model's own hyperparameters (mlp: hidden, layers, dropout);
    # {} for a model without any, and in cards written before model_args: the model's defaults rebuild it
    normalize: str = "none"  # 'speaker': features were normalised per speaker before the network (see config)
    init: list[str] = field(default_factory=lambda: ["scratch"])  # what the weights started from, in order
    init_detail: dict = field(default_factory=dict)  # the files they came from (weights, encoder, starting model)
    training: dict = field(default_factory=dict)  # the TrainConfig, plus a stage's own settings
    split: dict = field(default_factory=dict)  # stage 2's split manifest and the CSVs trained on
    metrics: dict = field(default_factory=dict)  # epoch (the one saved), seconds, val, test
    calibration: dict | None = None  # {"method": "temperature", "temperature": T, ...}: predict divides logits by T
    domain: dict | None = None  # the training embeddings' summary and the flag's threshold (toolkit/evaluation/domain.py)
    args: dict = field(default_factory=dict)  # the command line, for the record
    # what the training steps computed in: 'float32', or 'bf16' autocast (a GPU; a CPU under --precision bf16 with native
    # bf16: toolkit/precision.py); --config re-runs with it; cards written before it trained in float32
    precision: str = "float32"
    complete: bool = True  # False while training runs (or after it stopped early): the weights are not a finished model
    schema: int = SCHEMA

    def to_dict(self) -> dict:
        d = asdict(self)
        return {"schema": d.pop("schema"), **d}

    def save(self, path: str, **extra) -> None:
        """Write the card (with `extra` top-level entries, e.g. a metrics file's history) atomically."""
        write_json({**self.to_dict(), **extra}, path)

    @property
    def feature(self):
        """The feature object the model was trained on, with the settings its features were made with."""
        from toolkit.features import get_feature

        return get_feature(self.features["type"]).from_dict(self.features.get("params"))

    @property
    def feature_params(self):
        return self.feature.params

    @property
    def name(self) -> str:
        """The run in words for plot titles: 'cnn3 · sex', 'cnn3 from autoencoder · emotion', 'mlp on egemaps · age'."""
        started = [i for i in self.init if i != "scratch"]
        on = "" if self.features.get("type") in (None, "mel", "waveform") else f" on {self.features['type']}"
        return f"{self.model}{on}{' from ' + ' + '.join(started) if started else ''} · {self.category}"

    @property
    def temperature(self) -> float:
        return float((self.calibration or {}).get("temperature", 1.0))

    @property
    def input_options(self) -> dict:
        """How stored features become network inputs (the input adapter's input_options), without kind and shape."""
        return {k: v for k, v in self.input.items() if k not in ("kind", "shape")}

    def pretraining(self) -> str:
        """'none', 'imagenet', 'autoencoder', 'pseudo-label', ... joined with ' + ' (summarize_runs.py)."""
        detail = {"autoencoder": " (frozen)" if self.init_detail.get("freeze_encoder") else "",
                  "pretrained-speech": f" ({os.path.basename((self.init_detail.get('encoder') or {}).get('source', '?'))})"}
        parts = [i + detail.get(i, "") for i in self.init if i != "scratch"]
        return " + ".join(parts) or "none"

    @classmethod
    def new(cls, model: str, category: str, classes: list[str], data, config, split: dict, args: dict,
            init: list[str] | None = None, init_detail: dict | None = None, model_args: dict | None = None,
            precision: str = "float32") -> "RunCard":
        """The card of a run about to train `model` (with its own hyperparameters `model_args`) on `data` (a
        FeatureSet) with `config` (a TrainConfig), its steps computing in `precision`."""
        return cls(model=model, category=category, classes=list(classes), model_args=dict(model_args or {}),
                   features={"type": data.feature.name, "params": data.params, "stats": None},
                   input={"kind": data.feature.kind, "shape": data.input_shape(), **data.options},
                   normalize=config.normalize, init=list(init or ["scratch"]), init_detail=dict(init_detail or {}),
                   training=config.to_dict(), split=split, args=args, precision=precision)

    @classmethod
    def from_dict(cls, d: dict, source: str) -> "RunCard":
        """A card from its JSON dict; the sidecars of earlier versions are converted; anything else is an error."""
        if not isinstance(d, dict):
            raise ToolkitError(f"{source}: not a run card (a JSON {type(d).__name__}); restore it from the training run's folder")
        if "schema" not in d:
            d = _from_legacy_sidecar(d, source)
        schema = d["schema"]
        if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
            raise ToolkitError(f"{source}: run card schema {schema!r} is not a version number; restore the file")
        if schema > SCHEMA:
            raise ToolkitError(f"{source}: run card schema {schema} is newer than this toolkit's ({SCHEMA}); "
                               f"update the toolkit to use this model")
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("model", "category", "classes", "features", "input") if k not in d]
        if missing:
            raise ToolkitError(f"{source}: run card without {missing}; it is not a card written by this toolkit")
        if d.get("complete", True) is not True:
            epoch = (d.get("metrics") or {}).get("epoch") if isinstance(d.get("metrics"), dict) else None
            raise ToolkitError(f"{source}: an unfinished run (stopped{f' at epoch {epoch}' if epoch else ''} before its "
                               f"test scores); finish it with the same command and --resume, or train it again")
        check(card_schema(), d, source, "run card", "restore the file")
        card = cls(**{k: v for k, v in d.items() if k in known})
        _check(card, source)
        return card


def _check(card: RunCard, source: str) -> None:
    """The values a reader relies on, checked once here so that a hand-edited card fails with one line."""
    from toolkit.evaluation.domain import check_domain
    from toolkit.features import FEATURES
    from toolkit.io.labels import CLASSES

    classes = card.classes
    if not (card.model == AUTOENCODER and classes == []) and (len(classes) < 2 or len(set(classes)) != len(classes)):
        raise ToolkitError(f"{source}: 'classes' must list at least 2 distinct class names, got {classes!r}; restore the file")
    if card.features["type"] not in FEATURES:
        raise ToolkitError(f"{source}: unknown feature type {card.features['type']!r} (this toolkit has "
                           f"{', '.join(FEATURES)}); restore the file or update the toolkit")
    feature_type = FEATURES[card.features["type"]]
    check(params_schema(feature_type.Params), card.features.get("params") or {}, source,
                  "run card's features.params", "restore the file")
    feature_type.Params.from_dict(card.features.get("params") or {}).check(source)  # before the feature is made of them
    if card.input["kind"] != card.feature.kind:
        raise ToolkitError(f"{source}: input kind {card.input['kind']!r} does not match feature type "
                           f"{card.features['type']}; restore the file")
    card.feature.input.check_options(card.input_options, card.input["shape"], source)
    temperature = (card.calibration or {}).get("temperature", 1.0)
    if not isinstance(temperature, (int, float)) or not 0 < temperature < 1000:
        raise ToolkitError(f"{source}: calibration temperature {temperature!r} is not a positive number; restore the file")
    check_domain(card.domain, source)
    canonical = CLASSES.get(card.category)
    if canonical and sorted(classes) == sorted(canonical) and classes != canonical:
        # the network's output k means canonical[k]: another order would put every prediction under a wrong name
        raise ToolkitError(f"{source}: classes {classes} are CREMA-D's {card.category} classes in another order than "
                           f"the one the toolkit trains with ({canonical}); restore the file")


class _Features(BaseModel):
    model_config = STRICT
    type: str
    params: dict | None = None
    stats: dict | None = None


class _Input(BaseModel):
    model_config = STRICT
    kind: str
    shape: Annotated[list[Size], Field(min_length=1)]


class _Calibration(BaseModel):
    model_config = STRICT
    # predict divides the logits by it: far below 1e-2 they overflow to inf and the probabilities become NaN
    temperature: Annotated[float, Field(ge=1e-2, le=1e3)] = 1.0


def _finite_numbers(value):
    """Every number in a card's metrics is finite: a NaN score is never shown as a result."""
    bad = first_non_finite(value)
    if bad is not None:
        raise ValueError(f"holds a number that is not finite ({bad}): the run that wrote it went wrong")
    return value


@lru_cache(maxsize=None)
def card_schema() -> type[BaseModel]:
    """The run card's schema: RunCard's fields, with the entries readers rely on typed more closely."""
    return schema_of(RunCard, {"features": _Features, "input": _Input, "calibration": _Calibration | None,
                               "metrics": Annotated[dict, AfterValidator(_finite_numbers)],
                               "precision": Literal[COMPUTED], "init_detail": InitDetail})


def _from_legacy_sidecar(d: dict, source: str) -> dict:
    """The JSON sidecar of a version before run cards (flat keys: image_size, time_axis, spectrogram, recipe, ...)."""
    autoencoder = d.get("model") == "autoencoder_3_layers"  # stage 4a's JSON of earlier versions
    if autoencoder:
        d = {**d, "model": AUTOENCODER, "classes": []}
    if "model" not in d or "classes" not in d:
        raise ToolkitError(f"{source}: no ['model', 'classes'] entry; it is not the run card of a classifier trained by this toolkit")
    init = [name for name, present in (("imagenet", d.get("pretrained")), ("autoencoder", "encoder_file" in d),
                                       ("pseudo-label", "pseudo_labeling" in d or "started_from" in d)) if present]
    image_size = d.get("image_size", [128, 128])
    args = d.get("args") or {}
    training = {**(d.get("recipe") or {"recipe": "seed"}),
                **{k: args[k] for k in ("epochs", "batch_size", "learning_rate", "seed") if k in args}}
    if "pseudo_labeling" in d:
        training["pseudo_labeling"] = d["pseudo_labeling"]
    card = {
        "schema": 1, "model": d["model"], "category": d.get("category"), "classes": d["classes"],
        "features": {"type": "mel", "params": d.get("spectrogram") or {}, "stats": None},
        "input": {"kind": "image", "shape": [3, *image_size], "image_size": image_size,
                  "time_axis": d.get("time_axis", "resize"), "frames": d.get("frames")},
        "init": init or ["scratch"],
        "init_detail": {k: d[k] for k in ("encoder_file", "freeze_encoder", "started_from") if k in d},
        "training": training, "split": {"kind": "unknown", "csvs": {"train": d["train_csv"]}} if d.get("train_csv") else {},
        "metrics": {k: d[k] for k in ("epoch", "seconds", "val", "test") if k in d}, "args": args,
    }
    if autoencoder:
        card["metrics"] = {k: d[k] for k in ("loss", "loss_definition", "images", "epochs", "seconds") if k in d}
        card["init_detail"] = {k: d[k] for k in ("encoder_file", "decoder_file") if k in d}
    return card


def card_path(pt_path: str) -> str:
    """`cnn3_sex.pt` -> `cnn3_sex.json`: where the training stages put the run card of the weights."""
    return os.path.splitext(pt_path)[0] + ".json"


def read_card(path: str, what: str | None = None) -> RunCard:
    """The run card at `path` (a .json, or the .pt it belongs to); a missing or broken file is a one-line error."""
    if path.endswith(".pt"):
        what, path = what or os.path.basename(path), card_path(path)
    if not os.path.isfile(path):
        raise ToolkitError(f"{path}: run card{f' of {what}' if what else ''} not found; the training stage writes it "
                           f"beside the .pt: copy it along with the weights (or re-train)")
    return RunCard.from_dict(read_json(path, "run card", "restore it from the training run's folder"), path)
