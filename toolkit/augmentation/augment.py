"""Training-time augmentation: SpecAugment masks and random gain for spectrogram batches, mixup for any batch, and
`--augment` (OnTheFly): training items re-made from waveforms augmented by toolkit.augmentation.wave_augment.

The spectrogram functions take a float batch (B, C, H, W) in [0, 1] as made by features.mel (0 = the dB floor, i.e.
silence; low frequencies at the bottom); mixup takes any batch. Each feature type picks what applies to it (its
`augmentation`). Every function draws its randomness from a CPU torch.Generator, so a seeded run is repeatable on
any device. Nothing here is used at evaluation time.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F


def _random_spans(batch: int, count: int, max_width: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, length) bool mask: `count` spans per row, each 0..max_width long at a random place."""
    width = torch.randint(0, max_width + 1, (batch, count), generator=generator)
    start = (torch.rand(batch, count, generator=generator) * (length - width + 1)).long()
    pos = torch.arange(length)
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (batch, count, length)
    return inside.any(dim=1)


def spec_augment(x: torch.Tensor, generator: torch.Generator, time_masks: int, time_width: int,
                 freq_masks: int, freq_width: int) -> torch.Tensor:
    """Blank random time columns and mel rows to the floor (Park et al. 2019, without time warping)."""
    b, _, h, w = x.shape
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    if time_masks and time_width:
        mask |= _random_spans(b, time_masks, min(time_width, w), w, generator)[:, None, :]
    if freq_masks and freq_width:
        mask |= _random_spans(b, freq_masks, min(freq_width, h), h, generator)[:, :, None]
    return x.masked_fill(mask[:, None].to(x.device), 0.0)


def random_gain(x: torch.Tensor, generator: torch.Generator, max_db: float, top_db: float) -> torch.Tensor:
    """Make each clip up to ±max_db louder or quieter: a shift of the dB image, clipped to its range.

    Pixels at the floor stay there: they are silence or padding, whose true level is unknown.
    """
    gain_db = (torch.rand(len(x), 1, 1, 1, generator=generator) * 2 - 1) * max_db
    shifted = (x + (gain_db / top_db).to(x.device, x.dtype)).clamp_(0.0, 1.0)
    return torch.where(x > 0, shifted, x)


def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Convex mixes of the batch with a shuffled copy of itself, with soft targets (Zhang et al. 2018)."""
    # torch's Beta sampler cannot take a generator; seed numpy's from it so the whole run stays repeatable.
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    targets = F.one_hot(y, num_classes).float()
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm]


@dataclass
class Augment:
    """The augmentation switches of a training recipe (toolkit.config, where their defaults live); all off here."""

    time_masks: int = 0
    time_width: int = 0
    freq_masks: int = 0
    freq_width: int = 0
    gain_db: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) mixing; 0 = off
    top_db: float = 0.0  # dB range of the images, to turn a gain in dB into grey levels (needed with gain_db)

    def active(self) -> bool:
        return bool(self.gain_db > 0 or self.time_masks or self.freq_masks or self.mixup > 0)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets): targets are class indices, or class probabilities when mixup is on."""
        if self.gain_db > 0:
            x = random_gain(x, generator, self.gain_db, self.top_db)
        if self.time_masks or self.freq_masks:
            x = spec_augment(x, generator, self.time_masks, self.time_width, self.freq_masks, self.freq_width)
        if self.mixup > 0:
            return mixup(x, y, num_classes, self.mixup, generator)
        return x, y


class OnTheFly:
    """`--augment`: training batches re-made from augmented audio, new every epoch. Each item's clip is read again,
    put through a chain of toolkit.augmentation.wave_augment transforms drawn for it (as augmentation.py makes its copies: the
    same code; babble noise from other training clips) and made into its feature as stage 2 made the stored one;
    then it is windowed or cropped as the stored features are in training. The chains are drawn from the run's
    generator, so a seeded run (and its --resume) is repeatable; the items of a batch are made by `workers`
    processes (the result does not depend on how many). Evaluation keeps the stored features."""

    def __init__(self, data, spec: str, workers: int = 1) -> None:
        from toolkit.augmentation.wave_augment import parse_spec

        self.spec = parse_spec(spec)
        self.feature = data.feature
        self.params = data.feature.params
        self.audio = list(data.audio)
        self.workers = workers
        self.pool = None

    def jobs(self, index: list[int], seed: int) -> list[tuple]:
        """What remake needs for each item: its clip, transforms, generator seed and the clips of its babble."""
        from toolkit.augmentation.copies import babble_sources, plan

        out = []
        for k, i in enumerate(index):
            entropy = (seed, k)
            chain = plan(entropy, self.spec, self.params.sr, len(self.audio) > 1, at_least_one=False)
            babble = babble_sources(entropy, chain, self.audio[:i] + self.audio[i + 1 :])  # any clip but this one
            out.append((self.feature, self.audio[i], chain, entropy, babble))
        return out

    def take(self, data, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """What data.feature.input.take gives for a training batch, made from augmented audio."""
        import pandas as pd

        jobs = self.jobs(index.tolist(), int(torch.randint(2**62, (1,), generator=generator)))
        if self.workers > 1 and len(jobs) > 1:
            if self.pool is None:
                from concurrent.futures import ProcessPoolExecutor

                from toolkit.io.audio import _init_worker

                self.pool = ProcessPoolExecutor(self.workers, initializer=_init_worker)
            values = list(self.pool.map(remake, jobs, chunksize=max(1, len(jobs) // (4 * self.workers))))
        else:
            values = [remake(job) for job in jobs]
        stacked = self.feature.input.stack(values, data.options)
        batch = replace(data, x=stacked.pop("x"), labels=data.labels[index.to(data.labels.device)], paths=[],
                        frame=pd.DataFrame(index=range(len(values))), extra=stacked, audio=None, wave_augment=None)
        return self.feature.input.take(batch, torch.arange(len(values)), generator)

    def __del__(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def remake(job: tuple) -> np.ndarray:
    """Worker: one item's feature made from its augmented audio (from the clip as it is when the augmented audio
    cannot make one, e.g. below a spectrogram's dB window)."""
    from toolkit.augmentation.copies import make_copy
    from toolkit.io.audio import ClipError, load_audio

    feature, source, chain, entropy, babble = job
    try:
        return feature.extract(make_copy(source, feature.params.sr, chain, entropy, babble))
    except ClipError:
        return feature.extract(load_audio(source, feature.params.sr))


def with_wave_augment(data, spec: str, normalize: str = "none", workers: int = 1):
    """The training set `data` (a FeatureSet) with on-the-fly waveform augmentation `spec` (a --augment value; 'none':
    `data` unchanged), its items made by `workers` processes. What cannot be re-made from audio is a one-line
    ToolkitError."""
    import os

    from toolkit.augmentation.wave_augment import parse_spec
    from toolkit.errors import ToolkitError

    if not parse_spec(spec):
        return data
    if data.feature.kind not in ("image", "audio"):
        raise ToolkitError(f"--augment {spec}: on-the-fly augmentation re-makes spectrograms or waveforms, not "
                           f"{data.feature.name} features; write augmented copies with augmentation.py and re-run stage 2 "
                           f"with --augmented_csv instead")
    if normalize == "speaker":
        raise ToolkitError(f"--augment {spec} with --normalize speaker: the speaker statistics are those of the stored "
                           f"features; drop one of the two (or train on augmentation.py's copies)")
    if data.audio is None:
        raise ToolkitError(f"--augment {spec}: the training CSV has no Audio_file_path column to read the clips from; "
                           f"use stage 2's split CSVs")
    missing = next((p for p in data.audio if not os.path.isfile(p)), None)
    if missing:
        raise ToolkitError(f"--augment {spec}: {missing}: audio file not found (the training CSV's Audio_file_path); "
                           f"--augment re-reads each training clip, so the audio must be where the CSV says")
    if not data.params:
        raise ToolkitError(f"--augment {spec}: how the training features were made is unknown (no params.json beside "
                           f"them); re-run generate_mel_spectrograms.py")
    return replace(data, wave_augment=OnTheFly(data, spec, workers))
