"""Pretrained speech encoders from `transformers` (wav2vec2, HuBERT, WavLM, data2vec-audio, ... : the models that
take the raw waveform): where their files are, loading them safely, and running one over a whole clip in bounded
memory. The frozen-feature type (features/ssl.py) and the fine-tuned classifier (models/speech.py) both use this.

An encoder is named by a local directory (config.json, preprocessor_config.json and the weights, as `save_pretrained`
or `hf download --local-dir` write them) or by a Hugging Face hub id, looked up in the local Hugging Face cache first;
only when it is not there and HF_HUB_OFFLINE is not set is it downloaded (once). Without network and without a local
copy the stage stops at once with one line that says where it looked. Nothing in the files runs as code: no
trust_remote_code, and transformers reads weights as safetensors or with torch.load(weights_only=True).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from toolkit.errors import ToolkitError
from toolkit.lazy import torch  # imported when first used: --help and the registry need no torch
from toolkit.schemas import EncoderConfig, check

if TYPE_CHECKING:
    from torch import nn

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_FILES = ["*.json", "*.safetensors", "*.bin"]  # config, feature extractor and weights; no TF/Flax/ONNX copies
MAX_CHUNK_SECONDS = 20.0  # a longer clip goes through the encoder in chunks: memory stays bounded, whatever its length
SUPPORTED = "encoders of the raw waveform: wav2vec2, HuBERT, WavLM, data2vec-audio, UniSpeech(-SAT), SEW(-D)"


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def _quiet_transformers() -> None:
    """No per-load progress bars or 'some weights were not used' notes (a pre-training checkpoint's quantizer)."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def not_found(name: str, reason: str) -> ToolkitError:
    from huggingface_hub import constants

    return ToolkitError(
        f"{name}: speech encoder not found ({reason}): no directory of that name, and not in the Hugging Face cache "
        f"{constants.HF_HUB_CACHE} (HF_HOME or HF_HUB_CACHE move it); get it once where there is network "
        f"(`hf download {name}`, then copy that cache folder here) or pass a directory with config.json, "
        f"preprocessor_config.json and the weights")


def resolve_encoder(name: str) -> str:
    """The local directory of encoder `name`: a directory as given, or a hub id's snapshot in the Hugging Face cache
    (downloaded first when it is not cached and HF_HUB_OFFLINE is not set)."""
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise ToolkitError(f"{name}: not a transformers model directory (no config.json); pass a folder written by "
                               f"save_pretrained or `hf download --local-dir`, or a hub id such as facebook/wav2vec2-base")
        return os.path.abspath(name)
    if os.path.exists(name):
        raise ToolkitError(f"{name}: a file, not a model directory or hub id; pass the folder that holds config.json")
    if not HUB_ID.match(name):
        raise ToolkitError(f"{name}: no such directory, and not a Hugging Face hub id (owner/name); check the path")
    from huggingface_hub import constants, snapshot_download

    try:
        return snapshot_download(name, local_files_only=True, allow_patterns=HUB_FILES)
    except Exception:  # not in the cache (or an incomplete entry): try the hub below, if allowed
        pass
    if constants.HF_HUB_OFFLINE:
        raise not_found(name, "HF_HUB_OFFLINE is set")
    try:
        return snapshot_download(name, allow_patterns=HUB_FILES, etag_timeout=10)
    except Exception as e:  # no network, unknown id, gated model: one line, and never minutes of retries
        raise not_found(name, f"download failed: {_first_line(e)}")


@dataclass(frozen=True)
class EncoderInfo:
    """What the toolkit needs to know about an encoder beyond its weights (kept in run cards and feature params)."""

    source: str  # the hub id or the directory it came from
    config: dict  # its transformers config, so a fine-tuned model can be rebuilt from the run card alone
    sr: int  # the sampling rate it was trained on (preprocessor_config.json)
    normalize: bool  # its feature extractor z-scores each clip (do_normalize)
    attention_mask: bool  # it is meant to get an attention mask with padded batches (return_attention_mask)


def encoder_info(source: str) -> EncoderInfo:
    """Read an encoder's config and feature-extractor settings (no weights loaded)."""
    directory = resolve_encoder(source)
    _quiet_transformers()
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
    except Exception as e:  # unknown model_type, code the toolkit would have to run (trust_remote_code), bad JSON
        raise ToolkitError(f"{directory}: not a usable transformers model config ({_first_line(e)}); "
                           f"pass one of the {SUPPORTED}")
    if hasattr(AutoModel._model_mapping.get(type(config), None), "_get_feat_extract_output_lengths"):
        # a waveform encoder's sizes, before a network of that size is made (a text model is refused by build_encoder)
        check(EncoderConfig, config.to_dict(), os.path.join(directory, "config.json"), "speech encoder config",
              "fix the file or get the encoder again")
    try:
        extractor = AutoFeatureExtractor.from_pretrained(directory, local_files_only=True)
    except Exception as e:
        raise ToolkitError(f"{directory}: no usable feature extractor settings (preprocessor_config.json: "
                           f"{_first_line(e)}); the encoder's sampling rate comes from there: add the file")
    sr = getattr(extractor, "sampling_rate", None)
    if not isinstance(sr, int) or sr < 1000:
        raise ToolkitError(f"{directory}: preprocessor_config.json gives no usable sampling_rate ({sr!r}); "
                           f"{SUPPORTED} say theirs there")
    return EncoderInfo(source=source if not os.path.isdir(source) else os.path.abspath(source),
                       config=config.to_dict(), sr=sr, normalize=bool(getattr(extractor, "do_normalize", False)),
                       attention_mask=bool(getattr(extractor, "return_attention_mask", False)))


def build_encoder(info: EncoderInfo, pretrained: bool) -> nn.Module:
    """The encoder network: its pretrained weights (pretrained=True) or random weights from its config alone."""
    _quiet_transformers()
    from transformers import AutoConfig, AutoModel

    config = dict(info.config)
    config = AutoConfig.for_model(config.pop("model_type"), **config)
    if pretrained:
        directory = resolve_encoder(info.source)
        try:
            encoder = AutoModel.from_pretrained(directory, local_files_only=True)
        except Exception as e:
            raise ToolkitError(f"{directory}: its weights cannot be loaded ({_first_line(e)}); complete the download "
                               f"(model.safetensors or pytorch_model.bin) or train from its config alone "
                               f"with --no-pretrained")
    else:
        encoder = AutoModel.from_config(config)
    if getattr(encoder, "main_input_name", None) != "input_values" or not hasattr(encoder, "_get_feat_extract_output_lengths"):
        raise ToolkitError(f"{info.source}: a {type(encoder).__name__} takes {getattr(encoder, 'main_input_name', '?')}, "
                           f"not the raw waveform; pass one of the {SUPPORTED}")
    return encoder


def zero_mean_unit_var(audio):
    """A clip z-scored as the encoders' feature extractors do it (Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm)."""
    return (audio - audio.mean()) / math.sqrt(float(audio.var()) + 1e-7)


def min_samples(config: dict) -> int:
    """The receptive field of the encoder's CNN front end: a clip shorter than this gives it no frame at all."""
    field = 1
    for kernel, stride in reversed(list(zip(config["conv_kernel"], config["conv_stride"]))):
        field = (field - 1) * stride + kernel
    return field


def chunks(wave: torch.Tensor, window: int) -> tuple[torch.Tensor, ...]:
    """A 1-D waveform in equal pieces of at most `window` samples (equal: no short tail the front end cannot take)."""
    return torch.tensor_split(wave, max(1, math.ceil(len(wave) / window)))


def pooled_states(encoder: nn.Module, wave: torch.Tensor, window: int, all_layers: bool) -> torch.Tensor:
    """One clip's hidden states averaged over its frames: (layers + 1, width) with all_layers (the CNN front end's
    projection, then every transformer layer: SUPERB's stack), else (1, width) of the last layer.

    The clip goes through the encoder in chunks of at most `window` samples, each frame counting once, so a
    10-minute recording needs no more memory than a 20-second one (chunks do not see each other's context).
    """
    total, frames = 0.0, 0
    for piece in chunks(wave, window):
        out = encoder(piece[None], output_hidden_states=all_layers)
        states = torch.stack(out.hidden_states)[:, 0] if all_layers else out.last_hidden_state  # (L, F, D) / (1, F, D)
        total = total + states.float().sum(-2)
        frames += states.shape[-2]
    return total / frames
