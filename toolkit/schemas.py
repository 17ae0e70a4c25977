"""Typed schemas of the files the toolkit writes and later reads back (run cards, stage 1's label manifest, stage 2's
split manifest, the packed store's index), checked with pydantic when a file is read: a file edited by hand, damaged,
or made by something else fails at once with one line naming the file and the field, instead of a traceback (or a
wrong result) later.

Validation is strict: a JSON value of the wrong type is never coerced ("3" is not 3, true is not 1, a list is not an
object), and NaN/inf are no numbers. A schema whose fields are a dataclass's (the run card, feature parameters) is
derived from the dataclass (`schema_of`), so a field added there is checked without being listed twice.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from toolkit.errors import ToolkitError

STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="allow")  # extra: keys of newer writers are kept


def _distinct(classes: list[str]) -> list[str]:
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"must list at least 2 distinct class names, got {classes}")
    return classes


ClassList = Annotated[list[str], AfterValidator(_distinct)]
Count = Annotated[int, Field(ge=0)]
Size = Annotated[int, Field(ge=1)]
Finite = float  # with allow_inf_nan=False (STRICT): NaN and inf are refused
Fraction = Annotated[float, Field(gt=0, lt=1)]


class LabelManifest(BaseModel):
    """Stage 1's {category}_with_audio_path.json: the category's classes and where its speakers came from."""
    model_config = STRICT
    category: str
    classes: ClassList
    speaker_column: str | None = None
    source: str = ""


class SplitManifest(BaseModel):
    """Stage 2's {category}_split.json: how the data was split (a run card copies it)."""
    model_config = STRICT
    kind: str
    seed: int | None = None
    fractions: dict[str, Fraction] = {}
    category: str
    classes: ClassList
    features: str
    clips: dict[str, Count]
    speakers: dict[str, Count]
    csvs: dict[str, str]


class StoreIndex(BaseModel):
    """The packed store's {stem}.store.json: the CSV's rows in order, each item's shape and checksum, the dtype."""
    model_config = STRICT
    version: int
    feature: str
    dtype: str
    csv: str
    csv_sha1: str
    params: dict = {}
    rows: list[str]
    shapes: list[list[Count]]
    checksums: list[Count]


class EncoderConfig(BaseModel):
    """What sizes a speech encoder in its transformers config (an encoder folder's config.json, or the copy a run card
    keeps): a stride of 0 would be a traceback deep in torch, and a config of a network far larger than any published
    one (16384 wide × 48 layers) would be the OOM killer, not a message."""
    model_config = STRICT
    model_type: str
    conv_kernel: Annotated[list[Size], Field(min_length=1)]
    conv_stride: Annotated[list[Size], Field(min_length=1)]
    conv_dim: Annotated[list[Size], Field(min_length=1)]
    hidden_size: Size
    num_hidden_layers: Size
    num_attention_heads: Size
    intermediate_size: Size

    @model_validator(mode="after")
    def _fits(self) -> "EncoderConfig":
        if not len(self.conv_kernel) == len(self.conv_stride) == len(self.conv_dim):
            raise ValueError(f"conv_kernel, conv_stride and conv_dim have {len(self.conv_kernel)}, {len(self.conv_stride)} "
                             f"and {len(self.conv_dim)} entries: one each per front-end layer")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                             f"{self.num_attention_heads}")
        # the transformer layers' weights alone (attention 4h², feed-forward 2hi), as float32
        needed = 4 * self.num_hidden_layers * (4 * self.hidden_size ** 2 + 2 * self.hidden_size * self.intermediate_size)
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if needed > memory:
            raise ValueError(f"hidden_size {self.hidden_size} × num_hidden_layers {self.num_hidden_layers} (intermediate_size "
                             f"{self.intermediate_size}) is a network of {needed / 2**30:,.0f} GiB of float32 weights, more "
                             f"than this machine's {memory / 2**30:.0f} GiB of memory")
        return self


class SpeechEncoder(BaseModel):
    """A fine-tuned speech classifier's encoder in its run card (init_detail.encoder): the config it is rebuilt from
    and the window (samples) a long clip is cut into at evaluation."""
    model_config = STRICT
    source: str
    config: EncoderConfig
    sr: Annotated[int, Field(ge=1000)]
    normalize: bool
    attention_mask: bool
    window: Size


class InitDetail(BaseModel):
    model_config = STRICT
    encoder: SpeechEncoder | None = None


def schema_of(dataclass: type, entries: dict[str, Any] | None = None) -> type[BaseModel]:
    """A strict pydantic model with the fields (types, required or not) of `dataclass`; `entries` gives a field a more
    precise type than the dataclass states (e.g. the keys of a dict field)."""
    hints = typing.get_type_hints(dataclass)
    spec = {}
    for f in dataclasses.fields(dataclass):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        kind = (entries or {}).get(f.name, hints[f.name])
        name = f.name if not hasattr(BaseModel, f.name) else f.name + "_"  # 'schema' is a BaseModel attribute
        spec[name] = (kind, Field(... if required else None, alias=f.name))
    return create_model(f"{dataclass.__name__}Schema", __config__=STRICT, **spec)


@lru_cache(maxsize=None)
def params_schema(params_class: type) -> type[BaseModel]:
    """The schema of a feature type's parameters (a FeatureParams dataclass)."""
    return schema_of(params_class)


def check(schema: type[BaseModel], data: Any, path: str, what: str, hint: str) -> BaseModel:
    """`data` (read from `path`) validated by `schema`; else a ToolkitError naming the file, the field and `hint`."""
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        raise ToolkitError(f"{path}: {what}: {problem(e)}; {hint}") from None


def problem(e: ValidationError) -> str:
    """The first error of a validation as 'field 'a.b': what is wrong (got X)'."""
    error = e.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"])
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    message = re.sub(r" or instance of \w+", "", message[0].lower() + message[1:])
    got = error.get("input")
    shown = "" if error["type"] in ("missing", "value_error") else f" (got {_short(got)})"
    return f"field '{field}' {message}{shown}" if field else f"{message}{shown}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_non_finite(value: Any) -> float | None:
    """The first NaN or infinite number in `value` (a number, array, tensor, or dicts and lists of them), else None:
    a probability or metric that is not finite is an error, never printed or written."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return next((bad for bad in map(first_non_finite, value) if bad is not None), None)
    if isinstance(value, float):
        return None if math.isfinite(value) else value
    if hasattr(value, "dtype") and hasattr(value, "shape"):  # numpy arrays and scalars, CPU tensors
        array = np.asarray(value)
        if array.dtype.kind in "fc":
            bad = array[~np.isfinite(array)]
            return float(bad.reshape(-1)[0].real if bad.dtype.kind == "c" else bad.reshape(-1)[0]) if bad.size else None
    return None
