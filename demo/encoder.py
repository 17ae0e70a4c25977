"""A small randomly initialised wav2vec2 encoder written to disk like a downloaded one (make_demo_encoder.py).

Pretrained weights cannot be shipped or fetched offline, so the demo, the tests and the from-scratch measurement use
this: the same files `save_pretrained` and `hf download` leave (config.json, preprocessor_config.json,
model.safetensors), loaded by path through the same code a user's hub model takes.
"""
from __future__ import annotations

import os


def demo_config(hidden: int = 32, layers: int = 2, conv_channels: int = 32):
    """A small wav2vec2 config: `hidden` wide, `layers` transformer layers, wav2vec2's 7-layer CNN front end with
    `conv_channels` channels (transformers' Wav2Vec2Config() itself is wav2vec2-base: 768, 12, 512)."""
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 16),
                          intermediate_size=4 * hidden, conv_dim=(conv_channels,) * 7,
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=min(16, hidden))


def save_demo_encoder(out: str, hidden: int = 32, layers: int = 2, conv_channels: int = 32, sr: int = 16000,
                      seed: int = 0) -> str:
    """Write a random-init wav2vec2 (demo_config) with a feature extractor at `sr` Hz into `out`; returns `out`."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model
    from transformers.utils import logging

    logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = demo_config(hidden, layers, conv_channels)
    os.makedirs(out, exist_ok=True)
    Wav2Vec2Model(config).save_pretrained(out)
    Wav2Vec2FeatureExtractor(sampling_rate=sr).save_pretrained(out)
    return out
