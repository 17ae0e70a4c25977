"""Semi-supervised pseudo-labeling (Lee 2013) as the seed ran it: the alpha ramp, the unlabeled set, the train step.

One epoch is one shuffled pass over the unlabeled batches (the seed's structure, kept so results compare):

    for each unlabeled batch b:
        label it with the model in eval mode (argmax; BatchNorm uses its running statistics and leaves them alone),
        then train on it in train mode with loss alpha(step) * cross_entropy(model(x), pseudo_labels)
        after batch 0, 25, 50, ... (every LABELED_EVERY batches): one full pass over the labeled training set; step += 1

So `step` counts labeled passes, not epochs or batches: an epoch of U unlabeled batches advances it by ceil(U / 25).
alpha(step) is 0 before T1, rises linearly to af at T2 and stays there. The seed started at step = T1 = 100: the
stage-3 model already is the supervised warm-up T1 stands for, so the start step defaults to T1 and alpha starts
ramping at once. Because step follows from the epoch number, --resume continues the ramp exactly.

Two deliberate departures from the seed: an unlabeled batch whose alpha is 0 is skipped (the seed's zero-weighted
Adam step still moved the weights through the optimizer's momentum), and a confidence threshold can leave out
pseudo-labels the model is unsure of (0, the default, keeps them all as the seed did).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.errors import ToolkitError
from toolkit.features import clip_of, features_from_audio
from toolkit.fileio import read_csv, resolve_from_csv, write_torch
from toolkit.runcard import RunCard
from toolkit.training.data import AUDIO_COLUMN as AUDIO
from toolkit.training import distributed
from toolkit.training.batch import Batch, forward
from toolkit.training.data import SPEAKER_COLUMN, FeatureSet, batch_iter, for_evaluation, load_split, make_feature_set
from toolkit.training.engine import Callback, TrainState
from toolkit.training.pseudo_schedule import alpha_weight
from toolkit.training.step import autocast, optimise
from toolkit.training.tasks import Classification, Task

LABELED_EVERY = 25  # unlabeled batches between full labeled passes (the seed's)
COMPARED = ("accuracy", "f1", "precision", "recall", "uar", "loss")


def labeled_passes_per_epoch(n_unlabeled: int, batch_size: int) -> int:
    """How far one epoch advances `step`: a labeled pass after unlabeled batch 0, 25, 50, ..."""
    return math.ceil(math.ceil(n_unlabeled / batch_size) / LABELED_EVERY)


@torch.no_grad()
def pseudo_label(model: nn.Module, x: torch.Tensor, threshold: float = 0.0,
                 lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax labels of a batch in eval mode, and which of them reach a softmax confidence of `threshold`.

    Eval mode matters: in train mode BatchNorm would normalise with this batch's own statistics and update its
    running averages with unlabeled data every time a label is asked for. The caller switches back to train mode.
    """
    model.eval()
    with autocast(x.device):
        probs = torch.softmax((model(x) if lengths is None else model(x, lengths=lengths)).float(), 1)
    confidence, labels = probs.max(1)
    return labels, confidence >= threshold


class PseudoLabeling(Task):
    """The epoch described in the module docstring as a task on the engine: its objective is alpha(step) × the cross
    entropy of a batch against the model's own pseudo-labels (those kept by the confidence threshold); its epoch
    interleaves the unlabeled batches with full labeled passes (the Classification task). Every optimiser step, of
    either kind, is the engine's (step.optimise)."""

    def __init__(self, train: FeatureSet, unlabeled: FeatureSet, batch_size: int, device: torch.device, seed: int,
                 T1: int, T2: int, af: float, start_step: int, threshold: float = 0.0) -> None:
        super().__init__(unlabeled, batch_size, device)
        self.labeled = Classification(train, batch_size, device)
        self.seed, self.T1, self.T2, self.af, self.start_step, self.threshold = seed, T1, T2, af, start_step, threshold
        self.passes = labeled_passes_per_epoch(len(unlabeled), batch_size)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return batch.weight * F.cross_entropy(forward(model, batch), batch.labels)

    def steps_per_epoch(self, accumulate: int = 1) -> None:
        return None  # unlabeled batches with alpha 0 or too few confident labels take no step

    def run_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, _: torch.Generator | None,
                  accumulate: int = 1) -> dict:
        # Seeded per epoch (not carried over) so that a resumed run sees the same order as an uninterrupted one.
        generator = torch.Generator().manual_seed(self.seed + epoch)
        step = self.start_step + (epoch - 1) * self.passes
        labeled_losses, unlabeled_loss, used, seen = [], 0.0, 0, 0
        for b, batch in enumerate(batch_iter(self.data, self.batch_size, self.device, generator)):
            alpha = alpha_weight(step, self.T1, self.T2, self.af)
            if alpha > 0:
                labels, keep = pseudo_label(model, batch.x, self.threshold, batch.lengths)
                seen += len(batch)
                if keep.sum() > 1:  # BatchNorm in train mode needs two items
                    kept = Batch({k: v[keep] for k, v in batch.inputs.items()}, labels[keep],
                                 batch.index[keep.to(batch.index.device)], weight=alpha)
                    n = int(keep.sum())
                    unlabeled_loss += optimise(model, optimizer, [kept], self.loss, self.device) / alpha * n
                    used += n
            if b % LABELED_EVERY == 0:
                labeled_losses.append(self.labeled.run_epoch(model, optimizer, epoch, generator))
                step += 1
        return {"train_loss": float(np.mean(labeled_losses)), "step": step,
                "alpha": alpha_weight(step, self.T1, self.T2, self.af), "pseudo_used": used,
                "pseudo_kept_share": used / seen if seen else 0.0, "unlabeled_loss": unlabeled_loss / used if used else 0.0}


def make_train_step(train: FeatureSet, unlabeled: FeatureSet, batch_size: int, device: torch.device, seed: int,
                    T1: int, T2: int, af: float, start_step: int, threshold: float = 0.0) -> PseudoLabeling:
    """The PseudoLabeling task (stage 5's train_step for toolkit.training.engine.fit)."""
    return PseudoLabeling(train, unlabeled, batch_size, device, seed, T1, T2, af, start_step, threshold)


def warn_about_overlap(unlabeled: FeatureSet, scored: dict[str, FeatureSet]) -> None:
    """Unlabeled clips that are also in the validation or test set leak them into training: say so, once per set."""
    stems = {clip_of(p) for p in unlabeled.paths}
    for name, data in scored.items():
        shared = sorted(stems & {clip_of(p) for p in data.paths})
        if shared:
            print(f"warning: {len(shared)} unlabeled clip(s) are also in the {name} set (e.g. {shared[0]}): pseudo-labels "
                  f"on them leak the {name} set into training and flatter its score; leave them out of the unlabeled CSV")


def load_unlabeled(csv_path: str, card: RunCard, workers: int = 1) -> FeatureSet:
    """The clips an unlabeled CSV lists, as network inputs (labels -1) made like the starting model's (`card`).

    The model's feature column (Image_file_path for mel): the stored files as they are (they must have been made
    with the model's parameters). Otherwise Audio_file_path: each clip's features are made in memory with the
    model's parameters. Every clip is seen as evaluation sees it (mel with time_axis 'pad': the centred window),
    so labeling and training use the same input. Rows that cannot be used are reported and left out; none usable
    is a one-line error naming the CSV.
    """
    feature, column = card.feature, card.feature.column()
    df = read_csv(csv_path, [])
    if card.normalize == "speaker" and SPEAKER_COLUMN not in df.columns:
        raise ToolkitError(f"{csv_path}: the model normalises each speaker's features (--normalize speaker), so the "
                           f"unlabeled CSV needs an {SPEAKER_COLUMN} column; add it")
    if feature.stored and column in df.columns:
        data = load_split(csv_path, None, options=card.input_options, normalize=card.normalize, desc="unlabeled")
        for_evaluation(data)  # no random training windows: see above
        if data.params and card.features["params"] and data.params != card.features["params"]:
            raise ToolkitError(f"{csv_path}: its {feature.name} files were made with other parameters ({data.params}) "
                               f"than the model's ({card.features['params']}); list {AUDIO} instead, or remake them "
                               f"with the labeled data's stage-2 flags")
        return data
    if AUDIO not in df.columns:
        raise ToolkitError(f"{csv_path}: needs an {AUDIO}{f' or {column}' if feature.stored else ''} column; "
                           f"found {list(df.columns)}")
    df = df[df[AUDIO].notna() & (df[AUDIO].astype(str).str.strip() != "")].reset_index(drop=True)
    if df.empty:
        raise ToolkitError(f"{csv_path}: no row has an {AUDIO}; list one unlabeled clip per row")
    if not card.features["params"]:
        raise ToolkitError(f"{csv_path}: lists audio, but the feature parameters of the labeled data are unknown "
                           f"(no params.json beside them, none in the model's run card); list {column} instead")
    paths = [resolve_from_csv(p, csv_path) for p in df[AUDIO].astype(str)]
    results = features_from_audio(feature, paths, workers)
    keep = [i for i, (f, _) in enumerate(results) if f is not None]
    errors = [error for _, error in results if error]
    if errors:
        print(f"warning: {len(errors)} of {len(paths)} unlabeled clip(s) in {csv_path} are left out, e.g. {errors[0]}")
    if not keep:
        raise ToolkitError(f"{csv_path}: none of its {len(paths)} clips could be used ({errors[0]}); fix its {AUDIO} column")
    data = make_feature_set(feature, [results[i][0] for i in keep], df.iloc[keep].reset_index(drop=True),
                            card.input_options, paths=[paths[i] for i in keep], params=dict(card.features["params"]),
                            normalize=card.normalize)
    return for_evaluation(data)  # no random training windows: see above


def compare(before: dict, after: dict) -> dict:
    """{metric: {before, after, change}} for the metrics both have."""
    return {k: {"before": before[k], "after": after[k], "change": after[k] - before[k]}
            for k in COMPARED if k in before and k in after}


def format_comparison(table: dict, title: str) -> str:
    lines = [f"{title:<12}{'before':>10}{'after':>10}{'change':>10}"]
    for k, v in table.items():
        lines.append(f"{k:<12}{v['before']:>10.4f}{v['after']:>10.4f}{v['change']:>+10.4f}")
    return "\n".join(lines)


def label_counts(labels: np.ndarray, classes: list[str]) -> dict[str, int]:
    """How many clips the model put in each class (a collapse onto one class shows here first)."""
    counts = pd.Series(labels).value_counts()
    return {c: int(counts.get(i, 0)) for i, c in enumerate(classes)}


class StartingModelIsEpochZero(Callback):
    """The starting model takes part in the choice of the best epoch, as epoch 0 with its validation score `score`
    (engine.selection_score, measured as the engine measures an epoch): a pseudo-labeled epoch is kept only if
    validation rates it at least as high (ties go to the later epoch, as for every epoch), so stage 5 never saves a
    model that validation rates below the one it started from. Its weights are the run's .pt until one is."""

    def __init__(self, score: tuple[float, float]) -> None:
        self.score = score

    def on_train_start(self, state: TrainState) -> None:
        if state.history:  # resumed: the run's own best (epoch 0 included) came back with its _last.pt
            return
        state.best_score, state.best_epoch = self.score, 0
        state.best_state = copy.deepcopy({k: v.cpu() for k, v in state.model.state_dict().items()})
        if distributed.is_main():
            write_torch(state.best_state, state.run.weights)
