"""What a classifier's run does around the engine's loop, as callbacks (engine.Callback): write the best epoch's
weights while training (SaveBest), and at the end score it on validation and test, calibrate it, and write the card,
metrics, predictions and plots (Report). Kept out of the engine so that training itself imports no plotting.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from toolkit.config import TrainConfig
from toolkit.errors import ToolkitError
from toolkit.evaluation.domain import MAX_TRAIN_ITEMS, captured_embeddings, distances, fit_domain, per_owner_mean, set_threshold
from toolkit.evaluation.fairness import describe as describe_groups, fairness_report, group_columns, write_fairness
from toolkit.evaluation.metrics import breakdown, choose_temperature, format_confusion, format_metrics, reliability
from toolkit.evaluation.plots import plot_confusion_matrix, plot_reliability, plot_speaker_accuracy, plot_training_curves
from toolkit.fileio import write_csv, write_torch
from toolkit.runcard import RunCard
from toolkit.schemas import first_non_finite
from toolkit.training import distributed
from toolkit.training.data import FeatureSet
from toolkit.features import subset
from toolkit.training.engine import (Callback, RunFiles, TrainState, describe_score, evaluate, evaluation_windows, metrics_of,
                                     predict_logits, public)
from toolkit.training.fullbatch import fitted


class SaveBest(Callback):
    """Each better epoch's weights to {stem}.pt at once, with a card marked unfinished until Report has scored the
    run on test (so every reader refuses it in between, and a stopped run keeps its best epoch)."""

    def __init__(self, card: RunCard) -> None:
        self.card = card

    def on_epoch_end(self, state: TrainState) -> None:
        if not state.improved or not distributed.is_main():
            return
        write_torch(state.best_state, state.run.weights)
        self.card.metrics = {"epoch": state.epoch, "val": public(state.metrics)}
        self.card.complete = False
        self.card.save(state.run.card)


class Report(Callback):
    """After training (rank 0): the out-of-domain reference, the L-BFGS fit's record, then `report`."""

    def __init__(self, train: FeatureSet, val: FeatureSet, test: FeatureSet, card: RunCard, device: torch.device) -> None:
        self.train, self.val, self.test, self.card, self.device = train, val, test, card, device

    def on_train_end(self, state: TrainState) -> None:
        if not distributed.is_main():  # rank 0 scores the best epoch and writes the files
            return
        config, windows = state.config, state.config.eval_windows == "all"
        self.card.domain = describe_domain(state.model, self.train, self.val, config.batch_size, self.device, windows)
        if config.optimizer == "lbfgs":
            self.card.training["lbfgs"] = fitted(state.history, state.best_epoch, len(self.train))
        self.card = report(state.model, state, self.val, self.test, config, state.run, self.card, self.device)


def report(model: nn.Module, loop: TrainState, val: FeatureSet, test: FeatureSet, config: TrainConfig,
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


def describe_domain(model, train, val, batch_size: int, device, windows: bool) -> dict:
    """The card's `domain` entry for a trained model (eval mode): fitted on `train`'s embeddings (windows as
    evaluation takes them), its threshold set on `val`'s recording distances."""
    if len(train) > MAX_TRAIN_ITEMS:
        train = subset(train, np.sort(np.random.default_rng(0).permutation(len(train))[:MAX_TRAIN_ITEMS]))
    train_embeddings, _ = window_embeddings(model, train, batch_size, device, windows)
    domain = fit_domain(train_embeddings)
    val_embeddings, owner = window_embeddings(model, val, batch_size, device, windows)
    return set_threshold(domain, per_owner_mean(distances(domain, val_embeddings), owner, len(val)))


def window_embeddings(model, data, batch_size: int, device, windows: bool) -> tuple[np.ndarray, np.ndarray]:
    """(embedding of every window evaluation scores (float64), the item each window belongs to)."""
    window_data, owner = evaluation_windows(data, windows)
    with captured_embeddings(model) as captured:
        predict_logits(model, window_data, batch_size, device)
    return np.concatenate(captured).astype(np.float64), owner.numpy()
