"""The one training engine and what runs in it.

optimise: the step (autocast, backward, gradient accumulation, optimiser step) over a Task's batches (tasks.py);
Schedule: the learning rate of every optimiser step; train_loop: the epochs (resume, DDP, early stopping, the best
epoch, checkpoints, callbacks) around any task, shared by every training stage; evaluate: a classifier's metrics on a
split. fit: train_loop for a classifier, with the callbacks (callbacks.py) that write its weights and, at the end, its
test scores, calibration, metrics and plots. Nothing here imports plotting. docs/engine.md has the design.
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn
from tqdm import tqdm

from toolkit import precision
from toolkit.augmentation.augment import with_wave_augment
from toolkit.config import LR_SCHEDULES, TrainConfig
from toolkit.errors import ToolkitError
from toolkit.evaluation.metrics import classification_metrics, expected_calibration_error, format_metrics
from toolkit.fileio import exclusive_lock, load_checkpoint, write_torch
from toolkit.precision import COMPUTED
from toolkit.runcard import RunCard
from toolkit.schemas import STRICT, Count, check, schema_of
from toolkit.training import distributed
from toolkit.training.batch import Batch, forward
from toolkit.training.data import FeatureSet, batch_iter, move_to_device
from toolkit.training.fullbatch import full_batch_step, make_lbfgs
from toolkit.training.step import autocast, optimise
from toolkit.training.tasks import Classification, Task


def train_one_epoch(
    model: nn.Module, data: FeatureSet, optimizer: torch.optim.Optimizer, batch_size: int,
    device: torch.device, generator: torch.Generator, augment: Callable | None = None,
    class_weights: torch.Tensor | None = None, num_classes: int | None = None, accumulate: int = 1,
) -> float:
    """One pass over `data` in a shuffled order, augmented when `augment` is given; returns the mean training loss."""
    task = Classification(data, batch_size, device, augment, class_weights, num_classes)
    return task.run_epoch(model, optimizer, 0, generator, accumulate)


def train_batches(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch_iter: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device, transform: Callable | None = None, class_weights: torch.Tensor | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None, accumulate: int = 1,
) -> float:
    """optimise over ready (inputs, labels) batches: `transform(x, y) -> (x, targets)` augments a batch,
    `loss_fn(outputs, x, y)` replaces the (class-weighted) cross entropy."""
    weight = None if class_weights is None else class_weights.to(device)

    def objective(net: nn.Module, batch: Batch) -> torch.Tensor:
        out = net(batch.x).float()
        return F.cross_entropy(out, batch.labels, weight=weight) if loss_fn is None else loss_fn(out, batch.x, batch.labels)

    made = (Batch({"x": x}, y) for x, y in batch_iter)
    return optimise(model, optimizer, (b.with_input(*transform(b.x, b.labels)) if transform else b for b in made),
                    objective, device, accumulate)


@torch.no_grad()
def predict_logits(model: nn.Module, data: FeatureSet, batch_size: int, device: torch.device) -> torch.Tensor:
    """Eval-mode logits (float32, CPU) of every item of `data`, in order."""
    model.eval()
    out = []
    for batch in batch_iter(data, batch_size, device):
        with autocast(device):
            out.append(forward(model, batch).float())
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
        os.makedirs(self.folder, exist_ok=True)
        with exclusive_lock(self.path(".lock"), f"{self.stem} in {self.folder}"):
            yield


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


def lr_factor(schedule: str, done: int, total: int, warmup: int, per_step: bool) -> float:
    """The learning-rate factor after `done` of `total` steps or epochs: 'none' 1; 'cosine' from 1 down towards 0;
    'onecycle' a linear warm-up over the first `warmup`, then the cosine; 'linear' the warm-up, then a straight line
    down to 0. Per optimiser step the warm-up rises from 0 (Hugging Face's get_linear/cosine_schedule_with_warmup);
    per epoch from 1/(warmup + 1) (an epoch at a learning rate of 0 would be wasted)."""
    if schedule == "none":
        return 1.0
    if done < warmup:
        return done / warmup if per_step else (done + 1) / (warmup + 1)
    if schedule == "linear":
        return max(0.0, (total - done) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * (done - warmup) / max(1, total - warmup)))


class Schedule:
    """The learning rate of every optimiser step, set just before the step (a hook on the optimiser, so every step
    is scheduled, also those of a task's own epoch such as pseudo-labeling's).

    config.schedule_unit 'epoch': the factor follows the epochs (constant within one; torchvision's references);
    'step': it follows the optimiser steps of the whole run (config.epochs × steps_per_epoch; the Hugging Face
    Trainer's), and the warm-up is config.warmup of those steps (rounded up, as the Trainer). The state (steps taken)
    goes into _last.pt, so a resumed run continues the schedule where it stopped.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int | None = None) -> None:
        if config.lr_schedule not in LR_SCHEDULES:
            raise ToolkitError(f"unknown --lr_schedule '{config.lr_schedule}': choose one of {', '.join(LR_SCHEDULES)}")
        self.optimizer, self.schedule = optimizer, config.lr_schedule
        self.per_step = config.schedule_unit == "step" and self.schedule != "none"
        if self.per_step and not steps_per_epoch:
            raise ToolkitError("--schedule_unit step: this stage's epochs have no fixed number of optimiser steps; "
                               "use --schedule_unit epoch")
        self.total = config.epochs * steps_per_epoch if self.per_step else config.epochs
        warmup_of = math.ceil if self.per_step else lambda w: max(1, round(w))
        self.warmup = warmup_of(config.warmup * self.total) if self.schedule in ("onecycle", "linear") else 0
        self.base = [group["lr"] for group in optimizer.param_groups]
        self.step, self.epoch = 0, 0  # optimiser steps taken; epochs finished before the current one
        self.hooks = [optimizer.register_step_pre_hook(lambda *_: self.apply()),
                      optimizer.register_step_post_hook(lambda *_: self.advance())]

    def factor(self) -> float:
        done = self.step if self.per_step else self.epoch
        return lr_factor(self.schedule, done, self.total, self.warmup, self.per_step)

    def apply(self) -> None:
        factor = self.factor()
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base * factor

    def advance(self) -> None:
        self.step += 1

    def begin_epoch(self, done: int) -> float:
        """Before the epoch after `done` finished ones: its (first step's) learning rate, set and returned."""
        self.epoch = done
        self.apply()
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state.get("step", 0))  # a run saved before per-step schedules: per-epoch ones need no state

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


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
    precision: Literal[COMPUTED] | None = None  # what its steps computed in (toolkit/precision.py); None: not recorded
    model_args: dict | None = None  # the model's own hyperparameters (the run card's model_args); None: not recorded


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
class TrainState:
    """Where a run stands, what every callback is given (and train_loop returns)."""

    model: nn.Module  # the network being trained (plain parameter names; `net` may wrap it for DDP / compile)
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    config: TrainConfig
    run: RunFiles
    history: list[dict] = field(default_factory=list)  # one row per epoch: train_loss, extras, val_* metrics, lr, seconds
    epoch: int = 0  # the epoch running (on_step_end) or just finished (on_epoch_end)
    metrics: dict = field(default_factory=dict)  # the last epoch's validation metrics
    improved: bool = False  # the last epoch is the best so far
    best_epoch: int = 0  # the epoch whose weights are best_state (the last one when there is no validation)
    best_score: tuple[float, float] = (-math.inf, -math.inf)  # selection_score of the best epoch
    best_state: dict | None = None  # a CPU copy of its state dict
    seconds: float = 0.0  # training time, the epochs before a --resume included

    @property
    def step(self) -> int:
        """Optimiser steps taken in the run (those before a --resume included)."""
        return self.schedule.step

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


class Callback:
    """Hooks of a training run (SpeechBrain's Brain.on_stage_end, Hugging Face's TrainerCallback); each does nothing
    unless overridden. on_epoch_end runs after the epoch is validated and selected, before its _last.pt is
    written; on_train_end after the best epoch's weights are loaded back into the model. Evaluation on test,
    calibration, metrics files and plots are callbacks (toolkit/training/callbacks.py), not the engine's business."""

    def on_train_start(self, state: TrainState) -> None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...


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
    model: nn.Module, config: TrainConfig, run: RunFiles, device: torch.device, train_step: Task | TrainStep,
    validate: Callable[[nn.Module], dict] | None = None, callbacks: Iterable[Callback] = (),
    resume: bool = False, compile: bool = False, data: str | None = None, model_args: dict | None = None,
) -> TrainState:
    """Train `model` for config.epochs with AdamW and config's schedule; every training stage's loop.

    `train_step` is a Task (the engine runs its epochs: batches, objective, accumulation, autocast), or a
    TrainStep (a whole epoch of its own, e.g. pseudo-labeling's or the full-batch L-BFGS fit); either way every
    optimiser step gets its scheduled learning rate and the callbacks' on_step_end. After each epoch `validate(net)`
    (metrics with 'f1' and 'loss') scores it; the best epoch by config.select_by (ties: the later epoch, as good and
    trained longer) is kept, and config.patience epochs without a better one stop the run. Without `validate` every
    epoch is the best so far. A resumable `{stem}_last.pt` is written after every epoch; with `resume` the run
    continues from it exactly as if it had never stopped (model, optimizer, schedule, RNG states, history), and
    refuses a changed config or, given `data` (data_fingerprint of the split CSVs) or `model_args` (the model's own
    hyperparameters), other data or other model arguments.
    """
    # --compile: steps run through the compiled wrapper; `model` keeps plain parameter names for the checkpoints
    net = distributed.wrap(model, device)  # under torchrun: DistributedDataParallel
    net = CompiledOrEager(net) if compile else net
    full_batch = config.optimizer == "lbfgs"  # an epoch is one L2 strength (fullbatch.py): no learning rate to schedule
    optimizer = make_lbfgs(model) if full_batch else make_optimizer(model, config.learning_rate, config.weight_decay)
    steps = train_step.steps_per_epoch(config.accumulate) if isinstance(train_step, Task) else None
    schedule = Schedule(optimizer, replace(config, lr_schedule="none") if full_batch else config, steps)
    run_step = train_step if not isinstance(train_step, Task) else \
        lambda net, optimizer, epoch, generator: train_step.run_epoch(net, optimizer, epoch, generator, config.accumulate)
    generator = torch.Generator().manual_seed(config.seed)
    state = TrainState(model, optimizer, schedule, config, run)
    callbacks = list(callbacks)
    step_hook = optimizer.register_step_post_hook(lambda *_: [c.on_step_end(state) for c in callbacks])
    if resume and os.path.isfile(run.last):
        saved = load_last(run.last, model, optimizer, generator)
        check_resumable(run.last, saved, config, data, precision.computed(device), model_args)
        state.history, state.best_epoch, state.best_state = saved["history"], saved.get("best_epoch", 0), saved.get("best_model")
        best = saved.get("best_score", -math.inf)
        state.best_score = tuple(best) if isinstance(best, (tuple, list)) else (best, 0.0)  # older runs: one number
        schedule.load_state_dict(saved.get("scheduler") or {})
        print(f"resuming {run.last} after epoch {saved['epoch']}" +
              (f" (best epoch {state.best_epoch}, {describe_score(state.best_score, config.select_by)})" if validate else ""))
    elif resume:
        print(f"--resume: no {run.last} yet, starting from epoch 1")

    start_epoch = len(state.history) + 1
    started = time.time() - sum(h["seconds"] for h in state.history)
    for c in callbacks:
        c.on_train_start(state)
    bar = tqdm(range(start_epoch, config.epochs + 1), desc=f"training {run.stem}", unit="epoch", initial=start_epoch - 1,
               total=config.epochs, disable=not distributed.is_main())
    for epoch in bar:
        # Checked before the epoch (not after the last one) so a resumed run that had stopped stays stopped.
        if validate and config.patience and epoch - 1 - state.best_epoch >= config.patience:
            bar.write(f"early stop: no better validation {config.select_by} in the {config.patience} epochs after epoch {state.best_epoch}")
            break
        t0 = time.time()
        state.epoch = epoch
        lr = schedule.begin_epoch(epoch - 1)
        # Libraries that draw from numpy's global RNG (transformers' SpecAugment masks) repeat exactly after --resume.
        np.random.seed((config.seed + epoch) % 2**32)
        out = run_step(net, optimizer, epoch, generator)
        extra = dict(out) if isinstance(out, dict) else {"train_loss": out}
        train_loss = extra.pop("train_loss")
        val = validate(net) if validate else {}
        scores = {f"validation {k}": v for k, v in public(val).items() if isinstance(v, (int, float))}
        check_finite(epoch, {"training loss": train_loss, **scores}, config, run, state.best_epoch)
        state.history.append({"epoch": epoch, "train_loss": train_loss, **extra,
                              **{f"val_{k}": v for k, v in public(val).items() if k != "confusion_matrix"},
                              "lr": lr, "seconds": time.time() - t0})
        score = selection_score(val, config.select_by) if validate else (float(epoch), 0.0)
        state.metrics, state.improved = val, score >= state.best_score
        if state.improved:
            state.best_score, state.best_epoch = score, epoch
            state.best_state = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
        for c in callbacks:
            c.on_epoch_end(state)
        if distributed.is_main():  # under torchrun the ranks hold the same state: one writes it
            save_last(run.last, model, optimizer, generator, epoch, state.history, scheduler=schedule.state_dict(),
                      best_score=state.best_score, best_epoch=state.best_epoch, best_model=state.best_state,
                      config=config.to_dict(), data=data, precision=precision.computed(device), model_args=model_args)
        bar.write(f"epoch {epoch:3d}/{config.epochs} train_loss {train_loss:.4g} "
                  f"{''.join(f'{k} {v:.4g} ' for k, v in extra.items())}{format_metrics(val, 'val_')}"
                  f"{'  *best' if state.improved and validate else ''}")
    step_hook.remove()
    schedule.remove()
    model.load_state_dict(state.best_state)
    state.seconds = time.time() - started
    for c in callbacks:
        c.on_train_end(state)
    return state


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


def check_resumable(path: str, state: dict, config: TrainConfig, data: str | None = None,
                    computed: str | None = None, model_args: dict | None = None) -> None:
    """--resume continues the run that wrote `path`: a changed training flag (other than --epochs), other split
    CSVs (stage 2 re-run, e.g. with another --seed), steps computed in another precision, or other model arguments
    (--dropout, --vote_bound: the weights would load, the network would differ) would mix two runs."""
    was = state.get("model_args")
    if model_args is not None and was is not None and was != model_args:
        changed = {k: (was.get(k), model_args.get(k)) for k in sorted({*was, *model_args}) if was.get(k) != model_args.get(k)}
        raise ToolkitError(f"{path}: --resume with other model arguments than the interrupted run: "
                           f"{changed_flags(changed)}; resume with the run's own, or delete it to start afresh")
    if data and state.get("data") and state["data"] != data:
        raise ToolkitError(f"{path}: --resume on other data than the interrupted run (the split CSVs changed since: "
                           f"stage 2 re-split them?); restore the run's split, or delete it to start afresh")
    if computed and state.get("precision") and state["precision"] != computed:
        raise ToolkitError(f"{path}: --resume would compute in {computed}, the interrupted run's steps computed in "
                           f"{state['precision']}; resume with its --precision {precision.flag_for(state['precision'])}"
                           f"{' on a GPU or a CPU with native bf16' if state['precision'] == 'bf16' else ' on a CPU (--device cpu)'}, "
                           f"or delete it to start afresh")
    if "config" not in state:  # written before configs were saved: nothing to compare
        return
    changed = TrainConfig.from_dict(state["config"]).changed(config)
    if changed:
        raise ToolkitError(f"{path}: --resume with other training flags than the interrupted run: {changed_flags(changed)}; "
                           f"resume with the run's own flags (only --epochs may change), or delete it to start afresh")


def changed_flags(changed: dict[str, tuple]) -> str:
    """'--learning_rate 0.01 (was 0.001), ...' of {flag: (the interrupted run's value, this run's)}."""
    return ", ".join(f"--{k} {new} (was {old})" for k, (old, new) in changed.items())


def fit(
    model: nn.Module, train: FeatureSet, val: FeatureSet, test: FeatureSet, config: TrainConfig, run: RunFiles,
    card: RunCard, device: torch.device, train_step: Task | TrainStep | None = None, resume: bool = False,
    compile: bool = False, callbacks: Iterable[Callback] = (),
) -> RunCard:
    """Train a classifier (train_loop), keep its best epoch by validation, score it on test.

    The inputs are standardised with statistics of `train` (vector features; kept in the card) unless the card
    already has them (a run that continues another model). The default train_step is the Classification task of
    the recipe in `config` (augmentation of the feature type, class weights); a custom one does its own batches
    (stage 5). Callbacks write the best epoch's weights as it improves (SaveBest) and, at the end, score it on
    validation and test with calibration, metrics, predictions and plots (Report); `callbacks` come after them.
    Returns the finished run card, also written beside the weights.
    """
    from toolkit.training.callbacks import Report, SaveBest  # the reporting side (plots): not imported with the engine

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
        weights = balanced_class_weights(train.labels, len(classes)) if config.class_weights == "balanced" else None
        if config.optimizer == "lbfgs":
            train_step = full_batch_step(model, train, config, device, weights)
        else:
            train_step = Classification(train, config.batch_size, device, train.feature.input.augmentation(config),
                                        weights, len(classes))
    if distributed.active():
        card.training["world_size"] = distributed.world_size()

    windows = config.eval_windows == "all"
    report = Report(train, val, test, card, device)
    with run.lock() if distributed.is_main() else nullcontext():
        train_loop(model, config, run, device, train_step,
                   validate=lambda net: evaluate(net, val, config.batch_size, device, len(classes), windows),
                   callbacks=[SaveBest(card), report, *callbacks], resume=resume, compile=compile,
                   data=data_fingerprint((card.split.get("csvs") or {}).values()), model_args=card.model_args)
    return report.card


