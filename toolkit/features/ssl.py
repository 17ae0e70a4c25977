"""Frozen speech-encoder features (SUPERB style): a pretrained encoder (wav2vec2, HuBERT, WavLM, ...; --encoder, a hub
id or a directory) runs once over each whole clip at its own sampling rate, and every hidden layer's states are
averaged over the clip's frames. A clip becomes a (layers + 1, width) stack, stored as float16 .npy; the linear and
mlp heads learn a softmax-weighted sum of the layers (models/heads.py), standardised per value with the training
split's statistics like every vector feature. transformers is imported only when an encoder is needed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from toolkit.features.base import FeatureParams, FeatureType, NpyFiles
from toolkit.features.encoders import MAX_CHUNK_SECONDS, build_encoder, encoder_info, min_samples, pooled_states, zero_mean_unit_var
from toolkit.io.audio import ClipError
from toolkit.lazy import torch  # imported when first used: --help and the registry need no torch

_ENCODERS: dict[str, torch.nn.Module] = {}  # one loaded encoder per process and source


@dataclass(frozen=True)
class SslParams(FeatureParams):
    encoder: str = "facebook/wav2vec2-base"  # hub id, or the absolute path of a model directory
    normalize: bool = True  # z-score each clip first, as the encoder's feature extractor does (do_normalize)
    chunk_seconds: float = MAX_CHUNK_SECONDS

    def tag_prefix(self) -> str:
        name = os.path.basename(self.encoder.rstrip("/")) if os.path.isabs(self.encoder) else self.encoder
        return f"{name.replace('/', '_')}_sr{self.sr}"


def frozen_encoder(source: str) -> torch.nn.Module:
    """The pretrained encoder in eval mode, on the CUDA GPU when there is one (extraction runs in one process)."""
    if source not in _ENCODERS:
        encoder = build_encoder(encoder_info(source), pretrained=True).eval().requires_grad_(False)
        _ENCODERS[source] = encoder.to("cuda" if torch.cuda.is_available() else "cpu")
    return _ENCODERS[source]


class Ssl(FeatureType):
    name = "ssl"
    folder = "ssl"
    Params = SslParams

    def make_storage(self) -> NpyFiles:
        return NpyFiles(self.name, dtype="float16", ndim=2, holds="layer states")  # (layers + 1, width)

    @classmethod
    def add_args(cls, p) -> None:
        from toolkit.config import at_least

        p.add_argument("--encoder", default=SslParams.encoder,
                       help="pretrained speech encoder: a Hugging Face hub id (looked up in the local cache; fetch it "
                            "once with `hf download ID`) or a directory with config.json, preprocessor_config.json "
                            "and the weights")
        p.add_argument("--chunk_seconds", type=at_least(1.0, float), default=SslParams.chunk_seconds,
                       help="longer clips go through the encoder in chunks of at most this length (bounded memory)")
        p.add_argument("--threads", type=at_least(1), default=None,
                       help="CPU threads for the encoder (default: all cores; 1 is faster when other work shares them)")

    @classmethod
    def params_from_args(cls, args) -> SslParams:
        if args.threads:
            torch.set_num_threads(args.threads)
        info = encoder_info(args.encoder)  # a missing or unusable encoder fails here, before any clip is read
        if info.sr != args.sr:
            print(f"note: {args.encoder} takes {info.sr} Hz audio: clips are resampled to that (not --sr {args.sr})")
        return SslParams(sr=info.sr, encoder=info.source, normalize=info.normalize, chunk_seconds=args.chunk_seconds)

    def workers(self, requested: int) -> int:
        # On a GPU one process feeds it. On CPUs, processes with one torch thread each (audio.py's pool sets that)
        # scale better than one process's threads over the small per-clip tensors of a clip-by-clip encoder.
        return 1 if torch.cuda.is_available() else requested

    def warm_up(self) -> None:
        frozen_encoder(self.params.encoder)

    def extract(self, audio: np.ndarray) -> np.ndarray:
        params = self.params
        encoder = frozen_encoder(params.encoder)
        shortest = min_samples(encoder.config.to_dict())
        if len(audio) < shortest:
            raise ClipError(f"too short for {params.encoder} ({len(audio)} samples at {params.sr} Hz, it needs "
                            f"{shortest}); leave it out")
        wave = torch.from_numpy(zero_mean_unit_var(audio) if params.normalize else audio).float()
        with torch.inference_mode():
            states = pooled_states(encoder, wave.to(encoder.device), round(params.chunk_seconds * params.sr),
                                   all_layers=True)
        return states.cpu().numpy().astype(np.float16)
