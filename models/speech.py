"""A speech encoder fine-tuned end to end: a transformers encoder (wav2vec2, HuBERT, WavLM, ...), its last hidden
layer averaged over each clip's frames, and a Linear layer to the classes (what AutoModelForAudioClassification does,
without its extra projection). The seed project's best model.

Input: (batch, samples) float waveforms, zero-padded, and each clip's length in samples (toolkit/features/waveform.py;
without lengths every row is a whole clip).
- Training: one padded batch, with the encoder's attention mask where its feature extractor asks for one (models
  with group norm in their front end, such as wav2vec2-base, are trained with zero padding and no mask, as their
  authors do); the average covers each clip's own frames only.
- Evaluation: each clip on its own, unpadded, in chunks of at most `window` samples: a clip's probabilities do not
  depend on which clips share its batch (so predict.py reproduces the test scores), and memory stays bounded.
"""
from __future__ import annotations

import torch
from torch import nn

from toolkit.errors import ToolkitError
from toolkit.features.encoders import EncoderInfo, build_encoder, min_samples, pooled_states


class SpeechClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_classes: int, window: int, attention_mask: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(encoder.config.hidden_size, num_classes)
        self.window = window
        self.attention_mask = attention_mask

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        lengths = torch.full((len(x),), x.shape[1], device=x.device) if lengths is None else lengths.to(x.device)
        if not self.training:
            pooled = [pooled_states(self.encoder, row[:n], self.window, all_layers=False)
                      for row, n in zip(x, lengths.tolist())]
            return self.classifier(torch.cat(pooled))
        valid = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]
        mask = valid.long() if self.attention_mask else None
        states = self.encoder(x, attention_mask=mask).last_hidden_state
        frames = self.encoder._get_feat_extract_output_lengths(lengths).clamp(min=1)
        own = torch.arange(states.shape[1], device=x.device)[None] < frames[:, None]
        pooled = (states * own[..., None]).sum(1) / frames[:, None]
        return self.classifier(pooled)


def build_speech_classifier(num_classes: int, encoder: dict, pretrained: bool = False) -> SpeechClassifier:
    """From a run card's init_detail['encoder'] (source, config, sr, normalize, attention_mask, window): the encoder's
    pretrained weights (pretrained=True, found through its source) or its architecture alone (the weights then come
    from a fine-tuned state dict, or the encoder trains from scratch)."""
    info = EncoderInfo(**{k: encoder[k] for k in ("source", "config", "sr", "normalize", "attention_mask")})
    if encoder["window"] < min_samples(info.config):  # pieces shorter than the front end's receptive field: no frame
        raise ToolkitError(f"run card: field 'init_detail.encoder.window' is {encoder['window']} samples, shorter than the "
                           f"encoder's front end ({min_samples(info.config)}); restore the file")
    return SpeechClassifier(build_encoder(info, pretrained), num_classes, encoder["window"], info.attention_mask)
