"""frame_mlp: each frame (one column of a time-frequency image) classified from the shape of its spectrum by small
MLPs, the same for every frame, and the clip's logits the mean of its loud frames' logits, each bounded to
+-vote_bound: the frame-level classifier of classic speaker-trait recognition (a GMM-UBM's per-frame likelihoods,
averaged), as a network. With `bands` above 1 each frame is read by that many sub-band experts, one MLP per
half-overlapping band of the frame, and its vote is the sum of theirs, each bounded (the multi-band recognisers of
Bourlard & Dupont 1996).

Why: a clip-level summary (eGeMAPS functionals, the long-term spectrum) mixes a speaker's vowels into one vector, so
an accent that moves single formants moves the summary like a change of sex would (experiments/RESULTS.md, "Voices
never heard", round 6); a frame keeps each vowel's formant pattern whole. Each frame's level is taken out before the
MLP (loudness, gain and the distance to the microphone carry no trait), and frames well below the clip's loudest
(pauses, the padding of short clips, SpecAugment's masked columns) do not vote. Sub-band experts, each bounded, keep one
region of the spectrum from outvoting the others (an accent that makes two formants meet where a woman's F2 sits,
while F1 and F4 still say "man": round 10).
"""
from __future__ import annotations

import torch
from torch import nn

from toolkit.errors import ToolkitError

from .heads import hidden_layers
from .hyperparameters import FrameArgs

LOUD_RANGE = 0.375  # frames voting: within this fraction of the grey range of the loudest (30 dB of 80-dB images)
SHAPE_SCALE = 10.0  # grey levels -> about unit spread per band for the first layer (0.1 grey = 8 dB)


def band_edges(bins: int, bands: int) -> list[tuple[int, int]]:
    """`bands` ranges of rows, each two hops wide and a hop apart (half-overlapping), covering all `bins`."""
    if bands == 1:
        return [(0, bins)]
    hop = bins // (bands + 1)
    if hop < 1:
        raise ToolkitError(f"frame_mlp --bands {bands}: the images have {bins} rows, too few for {bands} bands of 2 "
                           f"rows or more; use --bands {bins - 1} or fewer")
    return [(k * hop, bins if k == bands - 1 else (k + 2) * hop) for k in range(bands)]


class FrameMLP(nn.Module):
    """(B, C, bins, frames) images -> (B, num_classes) logits: the mean over the loud frames of each frame's vote,
    the sum of its bands' MLP logits, each bounded unless vote_bound is 0."""

    def __init__(self, num_classes: int, bins: int, args: FrameArgs = FrameArgs()) -> None:
        super().__init__()
        self.edges = band_edges(bins, args.bands)
        # each band's own hidden layers; one classifier reads them all
        self.bands = nn.ModuleList(hidden_layers(stop - start, (args.hidden,) * args.layers, args.dropout)
                                   for start, stop in self.edges)
        self.classifier = nn.Linear(args.hidden, num_classes)
        self.vote_bound = args.vote_bound
        # weights saved before `bands` (the private spelling: every torch the requirements admit has it)
        self._register_load_state_dict_pre_hook(_from_one_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(1)  # the channels are copies of one grey image
        level = grey.mean(1, keepdim=True)  # (B, 1, frames)
        loud = (level >= level.amax(2, keepdim=True) - LOUD_RANGE).to(x.dtype).transpose(1, 2)  # (B, frames, 1)
        shape = ((grey - level) * SHAPE_SCALE).transpose(1, 2)  # (B, frames, bins)
        bands = [shape[..., a:b] for a, b in self.edges]
        # each band's own shape: its mean taken out as the frame's level was (a no-op for one band)
        hidden = torch.stack([layers(band - band.mean(-1, keepdim=True)) for band, layers in zip(bands, self.bands)],
                             2)  # (B, frames, bands, hidden)
        # The clip's embedding goes through the classifier only to be where every network has it (the last Linear
        # layer's input: domain checks, the ONNX export, fine-tuning): the bands' hidden states summed, then their mean
        # over the loud frames. The logits are the votes below.
        self.classifier((hidden.sum(2) * loud).sum(1) / loud.sum(1))
        # Each band's vote (its logits, bounded to +-vote_bound unless that is 0), summed over the bands (a product of
        # experts), then the mean over the loud frames. Unbounded, a few frames with extreme logits decide the clip (an
        # accent that makes two formants meet where a woman's F2 sits: experiments/RESULTS.md, round 8), and one band
        # the frame (round 10). Summed rather than averaged, the votes of agreeing bands add up to a confident clip,
        # which temperature scaling (it only ever softens) cannot give an averaged model (round 10).
        votes = nn.functional.linear(hidden, self.classifier.weight, self.classifier.bias)  # (B, frames, bands, classes)
        if self.vote_bound:
            votes = self.vote_bound * torch.tanh(votes / self.vote_bound)
        return (votes.sum(2) * loud).sum(1) / loud.sum(1)


def _from_one_head(state_dict: dict, prefix: str, *args) -> None:
    """State dicts from before `bands` held one VectorHead, `head`: its layers are band 0's, its classifier ours."""
    for old, new in (("head.hidden.", "bands.0."), ("head.classifier.", "classifier.")):
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
