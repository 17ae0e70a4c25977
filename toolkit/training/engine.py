"""The one training loop and what runs in it.

train_one_epoch / evaluate: one pass over a FeatureSet. train_loop: the epochs (resume, early stopping, the best
epoch, checkpoints) around any `train_step`, shared by every training stage. fit: train_loop for a classifier, then
`report` (the test set, the run card, metrics, predictions and plots).
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn
from tqdm import tqdm

from toolkit.augmentation.augment import with_wave_augment
from toolkit.config import LR_SCHEDULES, TrainConfig
from toolkit.errors import ToolkitError
from toolkit.evaluation.domain import describe_domain
from toolkit.evaluation.fairness import describe as describe_groups, fairness_report, group_columns, write_fairness
from toolkit.evaluation.metrics import (breakdown, choose_temperature, classification_metrics, expected_calibration_error, format_confusion,
                                        format_metrics, reliability)
from toolkit.evaluation.plots import plot_confusion_matrix, plot_reliability, plot_speaker_accuracy, plot_training_curves
from toolkit.fileio import load_checkpoint, process_alive, write_csv, write_torch
from toolkit.runcard import RunCard
from toolkit.schemas import STRICT, Count, check, first_non_finite, schema_of
from toolkit.training import distributed
from toolkit.training.data import FeatureSet, batches, move_to_device
from toolkit.training.fullbatch import fitted, full_batch_step, make_lbfgs


def autocast(device: torch.device):
    """bf16 mixed precision on CUDA (no loss scaling needed); full precision on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def train_one_epoch(
    model: nn.Module, data: FeatureSet, optimizer: torch.optim.Optimizer, batch_size: int,
    device: torch.device, generator: torch.Generator, augment: Callable | None = None,
    class_weights: torch.Tensor | None = None, num_classes: int | None = None, accumulate: int = 1,
) -> float:
    """One pass over `data` in a shuffled order, augmented when `augment` is given; returns the mean training loss."""
    transform = None
    if augment is not None:
        num_classes = num_classes or int(data.labels.max()) + 1
        transform = lambda x, y: augment(x, y, num_classes, generator)  # noqa: E731
    return train_batches(model, optimizer, batches(data, batch_size, device, generator), device,
                         transform=transform, class_weights=class_weights, accumulate=accumulate)


def train_batches(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch_iter: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device, transform: Callable | None = None, class_weights: torch.Tensor | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None, accumulate: int = 1,
) -> float:
    """One optimiser step per `accumulate` (inputs, labels) batches, already on `device`; returns the mean training loss.

    `transform(x, y) -> (x, targets)` augments a batch (targets may be class probabilities, e.g. mixup).
    `loss_fn(outputs, x, y)` replaces the (class-weighted) cross entropy, e.g. the autoencoder's reconstruction MSE.
    `accumulate` > 1 sums the gradients of that many batches (each loss scaled by 1/accumulate) before a step, so
    a small batch that fits in memory trains like one `accumulate` times larger; a remainder still gets its step.
    """
    model.train()
    weight = None if class_weights is None else class_weights.to(device)
    total, count, pending = 0.0, 0, 0
    optimizer.zero_grad(set_to_none=True)
    for x, y in batch_iter:
        if transform is not None:
            x, y = transform(x, y)
        with autocast(device):
            out = model(x).float()
            loss = F.cross_entropy(out, y, weight=weight) if loss_fn is None else loss_fn(out, x, y)
        (loss / accumulate if accumulate > 1 else loss).backward()
        pending += 1
        if pending == accumulate:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            pending = 0
        total += loss.detach().float() * len(x)  # stays on the device: no sync per step
        count += len(x)
    if pending:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if distributed.active():  # the epoch's loss over every rank's share
        total, count = distributed.all_sum(torch.as_tensor(total, dtype=torch.float32, device=device),
                                           torch.tensor(float(count), device=device))
        count = int(count)
    return float(total) / max(count, 1)


@torch.no_grad()
def predict_logits(model: nn.Module, data: FeatureSet, batch_size: int, device: torch.device) -> torch.Tensor:
    """Eval-mode logits (float32, CPU) of every item of `data`, in order."""
    model.eval()
    out = []
    for x, _ in batches(data, batch_size, device):
        with autocast(device):
            out.append(model(x).float())
    return torch.cat(out).cpu() if out else torch.empty(0)  # one device->host copy: no GPU sync per batch


@torch.no_grad()
def item_logits(model: nn.Module, data: FeatureSet, batch_size: int, device: torch.device, windows: bool = False) -> torch.Tensor:
    """One logit vector per item: the model's, or, with `windows`, for an item the feature type covers with several
    windows (a mel clip longer than the window) the log of the mean probability over its windows, as predict.py
    scores a recording. softmax of either is the item's probabilities."""
    window_set, owner = evaluation_windows(data, windows)
    if window_set is data:
        return predict_logits(model, data, batch_size, device)
    probs = torch.softmax(predict_logits(model, window_set, batch_size, device), 1)
    # a class whose probability underflowed to 0 in every window: a very negative logit, not -inf (an infinite loss)
    return mean_by_owner(probs, owner, len(data)).clamp_min(torch.finfo(probs.dtype).tiny).log()


def evaluation_windows(data: FeatureSet, windows: bool) -> tuple[FeatureSet, torch.Tensor]:
    """(what evaluation puts through the network, the item each of its rows belongs to): `data` itself, or with
    `windows` the windows of the items the feature type covers with several (a mel clip longer than the window)."""
    spread = data.feature.input.eval_windows(data) if windows else None
    if spread is None:
        return data, torch.arange(len(data))
    x, owner = spread
    return replace(data, x=x, labels=torch.zeros(len(x), dtype=torch.long), paths=[],
                   frame=pd.DataFrame(index=range(len(x))), extra={}), owner


def mean_by_owner(values: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """(n, ...) means of the rows of `values` that belong to each of n owners (row i belongs to owner[i])."""
    sums = torch.zeros(n, *values.shape[1:], dtype=values.dtype).index_add_(0, owner, values)
    return sums / torch.bincount(owner, minlength=n).clamp(min=1).view(-1, *[1] * (values.dim() - 1))


def metrics_of(logits: torch.Tensor, labels: torch.Tensor, num_classes: int, temperature: float = 1.0) -> dict:
    """Classification metrics, loss and calibration error of logits (divided by `temperature`) against labels; the
    logits themselves are kept undivided, for fitting a temperature."""
    scaled = logits / temperature
    probs = torch.softmax(scaled, 1)
    metrics = classification_metrics(labels.numpy(), scaled.argmax(1).numpy(), num_classes)
    metrics["loss"] = float(F.cross_entropy(scaled, labels))
    metrics["ece"] = expected_calibration_error(probs.numpy(), labels.numpy())
    metrics["probabilities"] = probs.numpy()
    metrics["logits"] = logits
    return metrics


def score_probabilities(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """metrics_of for calibrated probabilities (of predict.py, a fusion): their logarithm as logits, so that the
    softmax gives them back and the loss and calibration error are those of the probabilities themselves."""
    log_p = torch.log(torch.as_tensor(np.asarray(probs), dtype=torch.float32).clamp_min(1e-38))
    return metrics_of(log_p, torch.tensor(np.asarray(labels), dtype=torch.long), num_classes)


def evaluate(model: nn.Module, data: FeatureSet, batch_size: int, device: torch.device, num_classes: int,
             windows: bool = False, temperature: float = 1.0) -> dict:
    """Loss, classification and calibration metrics of `model` on a labelled split (per-item probabilities and
    logits kept for later use; `public` leaves them out)."""
    return metrics_of(item_logits(model, data, batch_size, device, windows), data.labels.cpu(), num_classes, temperature)


@dataclass
class RunFiles:
    """Where a training run writes: {folder}/{stem}.pt, its run card .json, _metrics.csv/json, _last.pt, plots."""

    folder: str
    stem: str

    def path(self, suffix: str) -> str:
        return os.path.join(self.folder, self.stem + suffix)

    @property
    def weights(self) -> str:
        return self.path(".pt")

    @property
    def card(self) -> str:
        return self.path(".json")

    @property
    def last(self) -> str:
        return self.path("_last.pt")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold {stem}.lock while the run writes: a second run into the same folder and stem stops at once instead of
        overwriting this one's files (a lock left by a killed run is taken over)."""
        path = self.path(".lock")
        os.makedirs(self.folder, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                holder = _lock_holder(path)
                if holder and holder != os.getpid() and process_alive(holder):
                    raise ToolkitError(f"{path}: another run (process {holder}) is writing {self.stem} in {self.folder}; "
                                       f"wait for it to finish, or pass another output folder")
                os.remove(path)  # left by a run that no longer exists
        else:
            raise ToolkitError(f"{path}: cannot take the run's lock file; delete it if no run is writing there")
        try:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            yield
        finally:
            if os.path.exists(path) and _lock_holder(path) == os.getpid():
                os.remove(path)


def _lock_holder(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def public(metrics: dict) -> dict:
    """Metrics without the per-item arrays, for JSON and printing."""
    return {k: v for k, v in metrics.items() if k not in ("probabilities", "logits")}


def make_optimizer(model: nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; fused (one kernel for every parameter's update) when the parameters are on a CUDA device."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}  # CPU: unchanged (not fused)
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, **fused)


class CompiledOrEager(nn.Module):
    """torch.compile of `module` that falls back to `module` itself, with a one-line warning, the first time
    compiling fails (no C++ compiler, an unsupported operation, ...): a failed compile raises before the step runs,
    so the same step is run again uncompiled. Other errors (out of memory, bad input) are raised as they are."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        try:
            self.compiled = torch.compile(module)
        except Exception as e:  # e.g. a Python or platform torch.compile does not support
            self.compiled = None
            warn_compile_failed(e)

    def forward(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:
                if not type(e).__module__.startswith(("torch._dynamo", "torch._inductor")):
                    raise
                self.compiled = None
                warn_compile_failed(e)
        return self.module(*args, **kwargs)


def warn_compile_failed(e: Exception) -> None:
    reason = (str(e).strip().splitlines() or [""])[0][:160]
    print(f"warning: --compile: torch.compile failed ({type(e).__name__}: {reason}); training uncompiled")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, epochs: int,
                   warmup: float = TrainConfig.warmup) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch learning-rate factor: 'none' 1; 'cosine' from 1 down towards 0; 'onecycle' a linear warm-up over
    the first `warmup` fraction of the epochs (at least one), then the cosine; 'linear' the same warm-up, then a
    straight line down towards 0 (the Hugging Face Trainer's shape). Per epoch (not per step) so any train_step
    works with it."""
    if schedule not in LR_SCHEDULES:
        raise ToolkitError(f"unknown --lr_schedule '{schedule}': choose one of {', '.join(LR_SCHEDULES)}")
    warmup = max(1, round(warmup * epochs)) if schedule in ("onecycle", "linear") else 0

    def factor(done: int) -> float:  # `done` = epochs finished before the one about to run
        if schedule == "none":
            return 1.0
        if done < warmup:
            return (done + 1) / (warmup + 1)
        if schedule == "linear":
            return (epochs - done) / max(1, epochs - warmup)
        return 0.5 * (1 + math.cos(math.pi * (done - warmup) / max(1, epochs - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse class frequency, 1 on average over the training items (classes absent from training get 0)."""
    counts = torch.bincount(labels.cpu(), minlength=num_classes).float()
    return torch.where(counts > 0, len(labels) / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))


def save_last(path: str, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator,
              epoch: int, history: list[dict], **extra) -> None:
    """Everything needed to continue after `epoch` as if the run had never stopped (what --resume reads)."""
    write_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                 "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "history": history, **extra}, path)


RESUME_KEYS = ("model", "optimizer", "epoch", "generator", "torch_rng", "history")


class ResumeState(BaseModel):
    """A _last.pt's plain entries (the tensors are checked by loading them): what --resume relies on."""
    model_config = ConfigDict(**{**STRICT, "allow_inf_nan": True}, arbitrary_types_allowed=True)
    model: dict
    optimizer: dict
    epoch: Count
    generator: torch.Tensor
    torch_rng: torch.Tensor
    history: list[dict]
    scheduler: dict | None = None
    # selection_score of the best epoch (one number in runs before f1_loss); -inf: no epoch yet (NaN is refused by
    # check_finite before it is saved)
    best_score: tuple[float, float] | float = -math.inf
    best_epoch: Count = 0
    best_model: dict | None = None
    config: schema_of(TrainConfig) | None = None
    data: str | None = None  # data_fingerprint of the split CSVs it trained on


def data_fingerprint(csvs: Iterable[str]) -> str:
    """SHA-1 of the split CSVs' contents: another split of the data (stage 2 re-run) gives another fingerprint."""
    from toolkit.features.store import file_sha1

    digests = [file_sha1(p) if os.path.isfile(p) else "missing" for p in sorted(map(str, csvs))]
    return hashlib.sha1(" ".join(digests).encode()).hexdigest()


def load_last(path: str, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> dict:
    """Restore what save_last wrote into model, optimizer and RNGs; returns the saved dict (epoch, history, extras)."""
    hint = "delete it (training restarts from epoch 1) or drop --resume"
    state = load_checkpoint(path, hint)
    if isinstance(state, dict) and all(k in state for k in RESUME_KEYS):  # (else: which are missing, below)
        check(ResumeState, state, path, "not a resumable checkpoint of a run", hint)
    problem = _resumable_problem(state)
    if problem:
        raise ToolkitError(f"{path}: not a resumable checkpoint of a run ({problem}); {hint}")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
    except (RuntimeError, KeyError, ValueError, TypeError):
        raise ToolkitError(f"{path}: saved by a different model or class count; {hint}")
    return state


def _resumable_problem(state) -> str | None:
    """What is wrong with a _last.pt's structure (None: nothing), so that --resume fails in one line, not later."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}"
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        return f"no {', '.join(missing)}"
    history = state["history"]
    if not isinstance(state["epoch"], int) or not isinstance(history, list) or len(history) != state["epoch"] or \
            not all(isinstance(row, dict) and isinstance(row.get("seconds"), (int, float)) for row in history):
        return "its epoch and per-epoch history do not agree"
    if any(math.isnan(v) for v in np.ravel(state.get("best_score", 0.0))):
        return "its best score is NaN"
    if state.get("best_epoch", 0) and not isinstance(state.get("best_model"), dict):
        return f"best epoch {state.get('best_epoch')} without its weights"
    return None


def load_weights(model: nn.Module, path: str, hint: str) -> None:
    """Load a plain state dict file strictly; a missing, unreadable or mismatched file is a one-line error naming it."""
    load_state(model, load_checkpoint(path, hint), path, hint)


def load_state(model: nn.Module, state, path: str, hint: str) -> None:
    """load_state_dict(strict=True) with a one-line error naming `path` when the tensors do not fit the model."""
    expected = model.state_dict()
    if not isinstance(state, dict):
        raise ToolkitError(f"{path}: holds a {type(state).__name__}, not a state dict; {hint}")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    resized = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or resized:
        problems = [f"{len(keys)} {what} (e.g. {keys[0]})" for keys, what in
                    ((missing, "missing"), (unexpected, "unexpected"), (resized, "of another shape")) if keys]
        raise ToolkitError(f"{path}: does not fit {type(model).__name__}: {', '.join(problems)} tensors; {hint}")
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:  # a diverged run's weights: every output would be NaN, argmax class 0
        raise ToolkitError(f"{path}: holds non-finite (NaN/inf) weights, e.g. {broken[0]}: the training that made it "
                           f"diverged; re-train with a lower --learning_rate")
    model.load_state_dict(state, strict=True)


# One epoch of training: (network, optimizer, epoch number, the run's generator) -> the epoch's training loss, or a
# dict with `train_loss` and extra numbers to log as history columns.
TrainStep = Callable[[nn.Module, torch.optim.Optimizer, int, torch.Generator], "float | dict"]


@dataclass
class LoopResult:
    history: list[dict]  # one row per epoch: train_loss, extras, val_* metrics, lr, seconds
    best_epoch: int  # the epoch whose weights are best_state (the last one when there is no validation)
    best_score: tuple[float, float]  # selection_score of the best epoch
    best_state: dict  # a CPU copy of its state dict
    seconds: float  # training time, the epochs before a --resume included


def selection_score(val: dict, select_by: str) -> tuple[float, float]:
    """How good an epoch is on validation, higher is better, compared as a tuple: "f1" weighted F1, "loss" the
    validation loss, "f1_loss" F1 with the loss breaking ties (a small validation split has few distinct F1
    values, and one confident error there can make the loss alone keep epoch 1; experiments/RESULTS.md)."""
    if select_by == "f1":
        return (val["f1"], 0.0)
    if select_by == "loss":
        return (-val["loss"], 0.0)
    return (val["f1"], -val["loss"])


def describe_score(score: tuple[float, float], select_by: str) -> str:
    if select_by == "f1_loss":
        return f"validation f1 {score[0]:.4f}, loss {-score[1]:.4f}"
    return f"validation {select_by} {abs(score[0]):.4f}"


def train_loop(
    model: nn.Module, config: TrainConfig, run: RunFiles, device: torch.device, train_step: TrainStep,
    validate: Callable[[nn.Module], dict] | None = None, on_improve: Callable[[int, dict, dict], None] | None = None,
    resume: bool = False, compile: bool = False, data: str | None = None,
) -> LoopResult:
    """Train `model` for config.epochs with AdamW and config's schedule; every training stage's epoch loop.

    After each epoch `validate(net)` (metrics with 'f1' and 'loss') scores it; the best epoch by config.select_by
    (ties: the later epoch, as good and trained longer) is kept and passed to `on_improve(epoch, metrics, state)`,
    and config.patience epochs without a better one stop the run. Without `validate` every epoch is the best so far.
    A resumable `{stem}_last.pt` is written after every epoch; with `resume` the run continues from it exactly as if
    it had never stopped (model, optimizer, schedule, RNG states, history), and refuses a changed config or, given
    `data` (data_fingerprint of the split CSVs), other data.
    """
    # --compile: steps run through the compiled wrapper; `model` keeps plain parameter names for the checkpoints
    net = distributed.wrap(model, device)  # under torchrun: DistributedDataParallel
    net = CompiledOrEager(net) if compile else net
    full_batch = config.optimizer == "lbfgs"  # an epoch is one L2 strength (fullbatch.py): no learning rate to schedule
    optimizer = make_lbfgs(model) if full_batch else make_optimizer(model, config.learning_rate, config.weight_decay)
    scheduler = make_scheduler(optimizer, "none" if full_batch else config.lr_schedule, config.epochs, config.warmup)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    best_score, best_epoch, best_state, start_epoch = (-math.inf, -math.inf), 0, None, 1
    if resume and os.path.isfile(run.last):
        state = load_last(run.last, model, optimizer, generator)
        check_resumable(run.last, state, config, data)
        history, best_score, best_epoch = state["history"], state.get("best_score", -math.inf), state.get("best_epoch", 0)
        best_score = tuple(best_score) if isinstance(best_score, (tuple, list)) else (best_score, 0.0)  # older runs: one number
        best_state = state.get("best_model")
        start_epoch = state["epoch"] + 1
        if "scheduler" in state:
            scheduler.load_state_dict(state["scheduler"])
        print(f"resuming {run.last} after epoch {state['epoch']}" +
              (f" (best epoch {best_epoch}, {describe_score(best_score, config.select_by)})" if validate else ""))
    elif resume:
        print(f"--resume: no {run.last} yet, starting from epoch 1")

    started = time.time() - sum(h["seconds"] for h in history)
    bar = tqdm(range(start_epoch, config.epochs + 1), desc=f"training {run.stem}", unit="epoch", initial=start_epoch - 1,
               total=config.epochs, disable=not distributed.is_main())
    for epoch in bar:
        # Checked before the epoch (not after the last one) so a resumed run that had stopped stays stopped.
        if validate and config.patience and epoch - 1 - best_epoch >= config.patience:
            bar.write(f"early stop: no better validation {config.select_by} in the {config.patience} epochs after epoch {best_epoch}")
            break
        t0 = time.time()
        lr = optimizer.param_groups[0]["lr"]
        # Libraries that draw from numpy's global RNG (transformers' SpecAugment masks) repeat exactly after --resume.
        np.random.seed((config.seed + epoch) % 2**32)
        out = train_step(net, optimizer, epoch, generator)
        scheduler.step()
        extra = dict(out) if isinstance(out, dict) else {"train_loss": out}
        train_loss = extra.pop("train_loss")
        val = validate(net) if validate else {}
        scores = {f"validation {k}": v for k, v in public(val).items() if isinstance(v, (int, float))}
        check_finite(epoch, {"training loss": train_loss, **scores}, config, run, best_epoch)
        history.append({"epoch": epoch, "train_loss": train_loss, **extra,
                        **{f"val_{k}": v for k, v in public(val).items() if k != "confusion_matrix"},
                        "lr": lr, "seconds": time.time() - t0})
        score = selection_score(val, config.select_by) if validate else (float(epoch), 0.0)
        improved = score >= best_score
        if improved:
            best_score, best_epoch = score, epoch
            best_state = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
            if on_improve:
                on_improve(epoch, val, best_state)
        if distributed.is_main():  # under torchrun the ranks hold the same state: one writes it
            save_last(run.last, model, optimizer, generator, epoch, history, scheduler=scheduler.state_dict(),
                      best_score=best_score, best_epoch=best_epoch, best_model=best_state, config=config.to_dict(),
                      data=data)
        bar.write(f"epoch {epoch:3d}/{config.epochs} train_loss {train_loss:.4g} "
                  f"{''.join(f'{k} {v:.4g} ' for k, v in extra.items())}{format_metrics(val, 'val_')}"
                  f"{'  *best' if improved and validate else ''}")
    model.load_state_dict(best_state)
    return LoopResult(history, best_epoch, best_score, best_state, time.time() - started)


# A loss above this has blown up (a cross-entropy of 1e6 needs logits a million apart; a reconstruction error of images
# in [0, 1] is below 1): the network's outputs are noise even while the numbers are still finite.
DIVERGED_LOSS = 1e6


def check_finite(epoch: int, losses: dict[str, float], config: TrainConfig, run: RunFiles, best_epoch: int) -> None:
    """A NaN, infinite or huge loss means the weights are garbage now: stop before anything of this epoch is saved
    or selected (the best epoch so far, if any, stays on disk)."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(v) or v > DIVERGED_LOSS}
    if bad:
        kept = f"; {run.weights} keeps epoch {best_epoch}" if best_epoch else ""
        raise ToolkitError(f"training diverged in epoch {epoch} ({', '.join(f'{k} {v:.3g}' for k, v in bad.items())}): lower "
                           f"--learning_rate (now {config.learning_rate:g}) or check the data for broken clips{kept}")


def check_resumable(path: str, state: dict, config: TrainConfig, data: str | None = None) -> None:
    """--resume continues the run that wrote `path`: a changed training flag (other than --epochs), or other split
    CSVs (stage 2 re-run, e.g. with another --seed), would mix two runs."""
    if data and state.get("data") and state["data"] != data:
        raise ToolkitError(f"{path}: --resume on other data than the interrupted run (the split CSVs changed since: "
                           f"stage 2 re-split them?); restore the run's split, or delete it to start afresh")
    if "config" not in state:  # written before configs were saved: nothing to compare
        return
    changed = TrainConfig.from_dict(state["config"]).changed(config)
    if changed:
        flags = ", ".join(f"--{k} {new} (was {old})" for k, (old, new) in changed.items())
        raise ToolkitError(f"{path}: --resume with other training flags than the interrupted run: {flags}; "
                           f"resume with the run's own flags (only --epochs may change), or delete it to start afresh")


def fit(
    model: nn.Module, train: FeatureSet, val: FeatureSet, test: FeatureSet, config: TrainConfig, run: RunFiles,
    card: RunCard, device: torch.device, train_step: TrainStep | None = None, resume: bool = False,
    compile: bool = False,
) -> RunCard:
    """Train a classifier (train_loop), keep its best epoch by validation, score it on test (report).

    The inputs are standardised with statistics of `train` (vector features; kept in the card) unless the card
    already has them (a run that continues another model). The default train_step is one epoch of the recipe in
    `config` (augmentation of the feature type, class weights); a custom one does its own batches (stage 5).
    Returns the finished run card, also written beside the weights.
    """
    card = copy.deepcopy(card)
    classes = card.classes
    os.makedirs(run.folder, exist_ok=True)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    # --augment: training items re-made from augmented audio, by as many processes as torch has threads (--threads)
    train = with_wave_augment(train, config.augment, config.normalize, torch.get_num_threads())
    stats = card.features.get("stats") or train.feature.input.fit_stats(train.x)
    for split in (train, val, test):
        split.stats = stats
        move_to_device(split, device)
    card.features["stats"] = stats
    card.input["shape"] = train.input_shape()
    if train_step is None:
        augment = train.feature.input.augmentation(config)
        weights = balanced_class_weights(train.labels, len(classes)) if config.class_weights == "balanced" else None

        if config.optimizer == "lbfgs":
            train_step = full_batch_step(model, train, config, device, weights)
        else:
            def train_step(net, optimizer, epoch, generator):
                return train_one_epoch(net, train, optimizer, config.batch_size, device, generator, augment, weights,
                                       len(classes), config.accumulate)

    if distributed.active():
        card.training["world_size"] = distributed.world_size()

    def on_improve(epoch: int, val_metrics: dict, state: dict) -> None:
        if not distributed.is_main():
            return
        write_torch(state, run.weights)
        card.metrics = {"epoch": epoch, "val": public(val_metrics)}
        card.complete = False  # until report() has scored the run on test: every reader refuses it
        card.save(run.card)

    windows = config.eval_windows == "all"
    with run.lock() if distributed.is_main() else nullcontext():
        loop = train_loop(model, config, run, device, train_step,
                          validate=lambda net: evaluate(net, val, config.batch_size, device, len(classes), windows),
                          on_improve=on_improve, resume=resume, compile=compile,
                          data=data_fingerprint((card.split.get("csvs") or {}).values()))
        if not distributed.is_main():  # rank 0 scores the best epoch and writes the files
            return card
        card.domain = describe_domain(model, train, val, config.batch_size, device, windows)  # out-of-domain flag
        if config.optimizer == "lbfgs":
            card.training["lbfgs"] = fitted(loop.history, loop.best_epoch, len(train))
        return report(model, loop, val, test, config, run, card, device)


def report(model: nn.Module, loop: LoopResult, val: FeatureSet, test: FeatureSet, config: TrainConfig,
           run: RunFiles, card: RunCard, device: torch.device) -> RunCard:
    """Score the best epoch on validation and test, calibrated (config.calibration) on validation; print and write
    the card, metrics, predictions and plots."""
    classes, windows = card.classes, config.eval_windows == "all"
    raw_val = evaluate(model, val, config.batch_size, device, len(classes), windows)
    raw_test = evaluate(model, test, config.batch_size, device, len(classes), windows)
    if config.calibration == "temperature":
        speakers = val.frame["ActorID"].to_numpy() if "ActorID" in getattr(val.frame, "columns", []) else None
        temperature, note = choose_temperature(raw_val["logits"], val.labels.cpu().numpy(), speakers)
        card.calibration = {"method": "temperature", "temperature": temperature, "fitted_on": "validation split",
                            "note": note, "ece_before": {"val": raw_val["ece"], "test": raw_test["ece"]}}
    else:
        temperature, card.calibration = 1.0, None
    val_metrics = metrics_of(raw_val["logits"], val.labels.cpu(), len(classes), temperature)
    test_metrics = metrics_of(raw_test["logits"], test.labels.cpu(), len(classes), temperature)
    bad = first_non_finite([public(val_metrics), public(test_metrics), val_metrics["probabilities"], test_metrics["probabilities"]])
    if bad is not None:  # nothing non-finite is printed or written as a result
        raise ToolkitError(f"{run.weights}: the best epoch's validation/test scores hold a non-finite value ({bad}): "
                           f"the network's outputs are not numbers; re-train with a lower --learning_rate")
    print(f"best epoch {loop.best_epoch} ({describe_score(loop.best_score, config.select_by)}); test set, {len(test)} clips:")
    print(f"  {format_metrics(test_metrics, 'test_')}")
    print(format_confusion(test_metrics["confusion_matrix"], classes))
    if card.calibration:
        card.calibration["ece_after"] = {"val": val_metrics["ece"], "test": test_metrics["ece"]}
        if temperature == 1.0:
            print(f"  calibration: temperature 1 ({note}); test expected calibration error {test_metrics['ece']:.4f}")
        else:
            print(f"  calibration: temperature {temperature:.3f} ({note}); test expected calibration error "
                  f"{raw_test['ece']:.4f} -> {test_metrics['ece']:.4f}")
    test_breakdown = breakdown(test.frame, test.labels.cpu().numpy(), test_metrics["probabilities"].argmax(1), classes)
    if "worst_speaker" in test_breakdown:
        w = test_breakdown["worst_speaker"]
        print(f"  worst test speaker: {w['speaker']} ({w['label']}), accuracy {w['accuracy']:.3f} on {w['clips']} clips")

    groups = fairness_report(test.frame, test.labels.cpu().numpy(), test_metrics["probabilities"].argmax(1), classes,
                             group_columns(test.frame))
    for line in describe_groups(groups):
        print(f"  {line}")
    card.metrics = {"epoch": loop.best_epoch, "seconds": loop.seconds, "val": public(val_metrics),
                    "test": {**public(test_metrics), **test_breakdown, "groups": groups}}
    card.complete = True
    card.save(run.path("_metrics.json"), history=loop.history)
    write_csv(pd.DataFrame(loop.history), run.path("_metrics.csv"))
    write_test_predictions(test, test_metrics, classes, run.path("_test_predictions.csv"))
    write_test_predictions(val, val_metrics, classes, run.path("_val_predictions.csv"))  # fusion weights (crossval)
    title = f"{card.name} · test F1 {test_metrics['f1']:.3f}"
    plot_confusion_matrix(test_metrics["confusion_matrix"], classes, run.path("_confusion_matrix.png"), title)
    curves = {"before calibration" if temperature != 1.0 else "uncalibrated (T = 1)":
              reliability(raw_test["probabilities"], test.labels.cpu().numpy())}
    if temperature != 1.0:  # at T = 1 the calibrated curve is the same line, hidden under this one
        curves[f"temperature {temperature:.2f}"] = reliability(test_metrics["probabilities"], test.labels.cpu().numpy())
    plot_reliability(curves, run.path("_reliability.png"), f"{card.name}: calibration on the test split")
    plot_training_curves(loop.history, run.path("_training_curves.png"), title, saved_epoch=loop.best_epoch)
    if "per_speaker" in test_breakdown:
        plot_speaker_accuracy(test_breakdown["per_speaker"], run.path("_speakers.png"), f"{card.name}: test accuracy per speaker")
    write_fairness(groups, run.path(""), f"{card.name}: test F1 per group")
    card.save(run.card)  # last: a card that says complete is a finished run with all its files
    print(f"saved {run.weights} and its run card, metrics and plots in {run.folder}")
    return card


def write_test_predictions(data: FeatureSet, metrics: dict, classes: list[str], path: str) -> None:
    """Per-clip predictions, so per-speaker and per-class errors can be looked at."""
    probs = metrics["probabilities"]
    frame = data.frame.copy()
    frame["predicted"] = [classes[i] for i in np.argmax(probs, 1)]
    for i, c in enumerate(classes):
        frame[f"p_{c}"] = probs[:, i].round(6)
    write_csv(frame, path)
