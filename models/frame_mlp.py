"""frame_mlp: each frame (one column of a time-frequency image) classified from the shape of its spectrum by one small
MLP, the same for every frame, and the clip's logits the mean of its loud frames' logits, each bounded to
+-vote_bound: the frame-level classifier of classic speaker-trait recognition (a GMM-UBM's per-frame likelihoods,
averaged), as a network.

Why: a clip-level summary (eGeMAPS functionals, the long-term spectrum) mixes a speaker's vowels into one vector, so
an accent that moves single formants moves the summary like a change of sex would (experiments/RESULTS.md, "Voices
never heard", round 6); a frame keeps each vowel's formant pattern whole. Each frame's level is taken out before the
MLP (loudness, gain and the distance to the microphone carry no trait), and frames well below the clip's loudest
(pauses, the padding of short clips, SpecAugment's masked columns) do not vote.
"""
from __future__ import annotations

import torch
from torch import nn

from .heads import VectorHead
from .hyperparameters import FrameArgs

LOUD_RANGE = 0.375  # frames voting: within this fraction of the grey range of the loudest (30 dB of 80-dB images)
SHAPE_SCALE = 10.0  # grey levels -> about unit spread per band for the first layer (0.1 grey = 8 dB)


class FrameMLP(nn.Module):
    """(B, C, bins, frames) images -> (B, num_classes) logits: the mean of per-frame MLP logits (bounded, unless
    vote_bound is 0) over the loud frames."""

    def __init__(self, num_classes: int, bins: int, args: FrameArgs = FrameArgs()) -> None:
        super().__init__()
        self.head = VectorHead((bins,), num_classes, hidden=(args.hidden,) * args.layers, dropout=args.dropout)
        self.vote_bound = args.vote_bound

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(1)  # the channels are copies of one grey image
        level = grey.mean(1, keepdim=True)  # (B, 1, frames)
        loud = (level >= level.amax(2, keepdim=True) - LOUD_RANGE).to(x.dtype).transpose(1, 2)  # (B, frames, 1)
        hidden = self.head.hidden(((grey - level) * SHAPE_SCALE).transpose(1, 2))  # the mlp's layers, frame by frame
        # the mean of the frames' hidden states, then the linear classifier: the mean of the frames' logits, with the
        # clip's embedding where every network has it (the last Linear layer's input: domain checks, fine-tuning)
        logits = self.head.classifier((hidden * loud).sum(1) / loud.sum(1))
        if not self.vote_bound:
            return logits
        # Bounded votes: each frame's logits squashed to +-vote_bound, then their mean over the loud frames. Unbounded,
        # a few frames with extreme logits decide the clip (an accent that makes two formants meet where a woman's F2
        # sits: experiments/RESULTS.md, round 8). The classifier above still takes the clip embedding, where the
        # domain check and the ONNX export read it.
        frames = nn.functional.linear(hidden, self.head.classifier.weight, self.head.classifier.bias)
        votes = self.vote_bound * torch.tanh(frames / self.vote_bound)
        return (votes * loud).sum(1) / loud.sum(1)
