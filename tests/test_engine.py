"""The step-level engine (toolkit/training/engine.py): per-optimiser-step schedules with accumulation, resume in the
middle of a schedule, tasks, callbacks, batches, and no plotting library imported with it."""
import subprocess
import sys
from dataclasses import replace

import pandas as pd
import pytest
import torch
from torch import nn

from conftest import ROOT
from toolkit.config import FINETUNE
from toolkit.features import FeatureSet, FeatureType
from toolkit.training.data import batch_iter
from toolkit.training.engine import Callback, RunFiles, train_loop
from toolkit.training.tasks import Classification, Task


class Toy(FeatureType):
    """A vector feature with no files, for driving the engine directly."""
    name = "toy"


def toy_set(n: int = 10) -> FeatureSet:
    g = torch.Generator().manual_seed(0)
    frame = pd.DataFrame({"ActorID": [1000 + i % 2 for i in range(n)]})
    return FeatureSet(torch.rand(n, 6, generator=g), torch.arange(n) % 2, [f"{i}.npy" for i in range(n)], frame, Toy())


class Recorder(Callback):
    """The learning rate each optimiser step used, and the epochs seen."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.lrs, self.epochs, self.stop_after = [], [], stop_after

    def on_step_end(self, state) -> None:
        self.lrs.append(state.lr)  # set before the step by the schedule, read back after it

    def on_epoch_end(self, state) -> None:
        self.epochs.append(state.epoch)
        if state.epoch == self.stop_after:
            raise KeyboardInterrupt  # as if Ctrl-C came in this epoch: its _last.pt is not written


# 10 items in batches of 4: 3 batches an epoch, 2 optimiser steps with 2 accumulated (the remainder gets its step);
# 6 epochs: 12 steps, a quarter of them (3) warming up.
CONFIG = replace(FINETUNE, epochs=6, batch_size=4, accumulate=2, warmup=0.25, learning_rate=3e-5, seed=0)


def train(tmp_path, recorder: Recorder, resume: bool = False, config=CONFIG):
    torch.manual_seed(0)
    model = nn.Linear(6, 2)
    task = Classification(toy_set(), config.batch_size, torch.device("cpu"))
    state = train_loop(model, config, RunFiles(str(tmp_path), "toy"), torch.device("cpu"), task,
                       callbacks=[recorder], resume=resume)
    return model, state


def test_finetuning_warms_up_and_decays_per_optimiser_step_like_the_trainer(tmp_path):
    assert (FINETUNE.lr_schedule, FINETUNE.schedule_unit) == ("linear", "step")
    recorder = Recorder()
    _, state = train(tmp_path, recorder)
    # by hand: linear warm-up from 0 over 3 steps, then a straight line to 0 at step 12
    by_hand = [3e-5 * f for f in (0, 1 / 3, 2 / 3, 9 / 9, 8 / 9, 7 / 9, 6 / 9, 5 / 9, 4 / 9, 3 / 9, 2 / 9, 1 / 9)]
    assert recorder.lrs == pytest.approx(by_hand, rel=1e-12, abs=1e-20) and state.step == 12
    # and the same numbers as transformers' own schedule for the Trainer
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=3e-5)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=3, num_training_steps=12)
    trainer = []
    for _ in range(12):
        trainer.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert recorder.lrs == pytest.approx(trainer, rel=1e-12, abs=1e-20)
    assert [h["lr"] for h in state.history] == pytest.approx(by_hand[::2], abs=1e-20)  # each epoch's first step


def test_per_epoch_schedules_hold_the_rate_for_a_whole_epoch(tmp_path):
    recorder = Recorder()
    train(tmp_path, recorder, config=replace(CONFIG, lr_schedule="cosine", schedule_unit="epoch"))
    assert len(recorder.lrs) == 12 and recorder.lrs[0::2] == recorder.lrs[1::2] and recorder.lrs[0] == 3e-5
    assert recorder.lrs[2] < recorder.lrs[0]


def test_resume_in_the_middle_of_the_schedule_ends_exactly_as_an_uninterrupted_run(tmp_path):
    whole = Recorder()
    model, _ = train(tmp_path / "whole", whole)
    first = Recorder(stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "stopped", first)
    rest = Recorder()
    resumed, state = train(tmp_path / "stopped", rest, resume=True)
    assert rest.epochs == [3, 4, 5, 6] and state.step == 12  # epoch 3 had no _last.pt: it runs again
    assert first.lrs[:4] + rest.lrs == whole.lrs  # the schedule went on at step 5 of 12, mid-decay
    assert torch.equal(resumed.weight, model.weight) and torch.equal(resumed.bias, model.bias)


def test_a_new_task_is_a_loss_on_the_engine(tmp_path):
    class Centre(Task):  # pulls the outputs towards 0: a task needs no labels
        def loss(self, model, batch):
            return model(batch.x).pow(2).mean()

    torch.manual_seed(0)
    model = nn.Linear(6, 2)
    config = replace(CONFIG, lr_schedule="none", learning_rate=0.05, epochs=20)
    state = train_loop(model, config, RunFiles(str(tmp_path), "centre"), torch.device("cpu"),
                       Centre(toy_set(), 4, torch.device("cpu")))
    losses = [h["train_loss"] for h in state.history]
    assert losses[-1] < 0.2 * losses[0] and (tmp_path / "centre_last.pt").is_file()


def test_batches_carry_the_items_they_hold():
    data = toy_set(10)
    ordered = list(batch_iter(data, 4, torch.device("cpu")))
    assert [len(b) for b in ordered] == [4, 4, 2] and torch.equal(torch.cat([b.index for b in ordered]), torch.arange(10))
    shuffled = list(batch_iter(data, 4, torch.device("cpu"), torch.Generator().manual_seed(1)))
    index = torch.cat([b.index for b in shuffled])
    assert sorted(index.tolist()) == list(range(10)) and not torch.equal(index, torch.arange(10))
    assert all(torch.equal(b.x, data.x[b.index]) and torch.equal(b.labels, data.labels[b.index]) for b in shuffled)


def test_the_engine_imports_no_plotting_library():
    engine_only = ("import sys, toolkit.training.engine, toolkit.training.tasks; "
                   "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", engine_only], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    # the reporting side does plot (and so the check above can fail)
    out = subprocess.run([sys.executable, "-c", engine_only.replace("toolkit.training.tasks", "toolkit.training.callbacks")],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    assert "matplotlib" in out.stdout
