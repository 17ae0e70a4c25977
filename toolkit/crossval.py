"""Speaker-grouped K-fold cross-validation: K models, each scored on speakers it never heard.

Folds come from sklearn's StratifiedGroupKFold with ActorID as the group (no speaker in two folds, every speaker
tested exactly once, label mix kept per fold). Inside each fold a few training speakers are held out for
validation (model selection and early stopping), so the test speakers never influence a choice.
"""
from __future__ import annotations

import copy
import os
from typing import Callable

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold
from torch import nn

from .cli import seed_everything
from .config import TrainConfig
from .data import FeatureSet, subset
from .engine import RunFiles, evaluate, fit, metrics_of, public
from .errors import ToolkitError
from .fileio import write_csv, write_json
from .metrics import breakdown, classification_metrics
from .plots import plot_folds, plot_speaker_accuracy
from .runcard import RunCard
from .splits import hold_out_groups

SCORES = ("accuracy", "f1", "uar")  # plotted per fold (higher is better)
FOLD_METRICS = (*SCORES, "ece")  # summarised over folds
VAL_FRACTION = 0.15  # of each fold's training speakers, held out for validation


def speaker_folds(frame: pd.DataFrame, label: str, k: int, seed: int) -> list[np.ndarray]:
    """Row positions of each fold's test part: whole speakers, stratified by `label`."""
    speakers = frame["ActorID"].nunique()
    if not 2 <= k <= speakers:
        raise ToolkitError(f"--folds {k}: needs 2 to {speakers} folds for the {speakers} speakers found")
    folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [test for _, test in folds.split(frame, frame[label], frame["ActorID"])]


def fold_splits(frame: pd.DataFrame, label: str, k: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Per fold: row positions of train, val (held-out training speakers) and test (the fold)."""
    frame = frame.reset_index(drop=True)
    out = []
    for test in speaker_folds(frame, label, k, seed):
        rest = frame.drop(index=test)
        train, val = hold_out_groups(rest, label, VAL_FRACTION, seed)
        out.append({"train": train.index.to_numpy(), "val": val.index.to_numpy(), "test": np.asarray(test)})
    return out


def sort_by_clip(data: FeatureSet) -> FeatureSet:
    """Rows in clip-name order, so the same clips give the same folds whatever images (or CSV order) they come with."""
    return subset(data, np.argsort(data.frame["Audio_file_name"].astype(str).to_numpy(), kind="stable"))


def mean_std(values: list[float]) -> dict:
    """Mean and sample standard deviation (ddof 1) over folds."""
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "folds": v.tolist()}


def score_extra_tests(model: nn.Module, sets: dict[str, FeatureSet], card: RunCard, batch_size: int,
                      device: torch.device, path: str) -> dict:
    """Score a trained model on more labelled sets (per class and per speaker too) as its run card says it is used:
    its input standardisation, evaluation windows and temperature; written to `path` as JSON."""
    windows = card.training.get("eval_windows") == "all"
    out = {}
    for name, data in sets.items():
        data.stats = card.features["stats"]
        raw = evaluate(model, data, batch_size, device, len(card.classes), windows)
        m = metrics_of(raw["logits"], data.labels.cpu(), len(card.classes), card.temperature)
        out[name] = {**public(m), "ece_uncalibrated": raw["ece"],
                     **breakdown(data.frame, data.labels.cpu().numpy(), m["probabilities"].argmax(1), card.classes)}
        print(f"  {name} ({len(data)} clips): accuracy {m['accuracy']:.4f} f1 {m['f1']:.4f} uar {m['uar']:.4f} "
              f"ece {m['ece']:.4f} (uncalibrated {raw['ece']:.4f})")
    if out:
        write_json(out, path)
    return out


def cross_validate(
    data: FeatureSet, k: int, config: TrainConfig, make_model: Callable[[], nn.Module], run: RunFiles,
    card: RunCard, device: torch.device, extra_tests: dict[str, FeatureSet] | None = None,
) -> dict:
    """Train k models (one per speaker-grouped fold) with `fit`; write {stem}_cv.json, _cv_speakers.csv and two plots in run.folder.

    extra_tests: more labelled sets (e.g. a corpus of unseen kinds of voices) every fold's model is scored on.
    """
    with run.lock():
        return _cross_validate(data, k, config, make_model, run, card, device, extra_tests or {})


def _cross_validate(data: FeatureSet, k: int, config: TrainConfig, make_model: Callable[[], nn.Module], run: RunFiles,
                    card: RunCard, device: torch.device, extra_tests: dict[str, FeatureSet]) -> dict:
    classes, category = card.classes, card.category
    data = sort_by_clip(data)
    splits = fold_splits(data.frame, category, k, config.seed)
    folds, predictions = [], []
    for i, part in enumerate(splits, 1):
        print(f"== fold {i}/{len(splits)}: test speakers {sorted(data.frame['ActorID'].iloc[part['test']].astype(str).unique())}")
        seed_everything(config.seed)  # every fold starts from the same initial weights
        model = make_model()
        fold_run = RunFiles(os.path.join(run.folder, f"{run.stem}_cv", f"fold{i}"), run.stem)
        test = subset(data, part["test"])
        fold_card = copy.deepcopy(card)
        fold_card.split = {**card.split, "fold": i, "folds": len(splits)}
        result = fit(model, subset(data, part["train"]), subset(data, part["val"]), test, config, fold_run, fold_card, device)
        extra = score_extra_tests(model, extra_tests, result, config.batch_size, device, fold_run.path("_extra_tests.json"))
        metrics = result.metrics
        folds.append({"fold": i, "epoch": metrics["epoch"], "seconds": metrics["seconds"], "test": {k: metrics["test"][k] for k in FOLD_METRICS},
                      "test_speakers": sorted(test.frame["ActorID"].astype(str).unique()),
                      "val_speakers": sorted(data.frame["ActorID"].iloc[part["val"]].astype(str).unique()), "extra_tests": extra})
        pred = pd.read_csv(fold_run.path("_test_predictions.csv"))
        predictions.append(pred.assign(fold=i))

    pooled = pd.concat(predictions, ignore_index=True)
    index = {c: j for j, c in enumerate(classes)}
    y_true = pooled[category].astype(str).map(index).to_numpy()
    y_pred = pooled["predicted"].astype(str).map(index).to_numpy()
    detail = breakdown(pooled, y_true, y_pred, classes)
    pooled_metrics = classification_metrics(y_true, y_pred, len(classes))
    summary = {
        "run": card.to_dict(), "folds": len(splits), "fold_results": folds,
        "test": {k: mean_std([f["test"][k] for f in folds]) for k in FOLD_METRICS},
        "extra_tests": {name: {k: mean_std([f["extra_tests"][name][k] for f in folds]) for k in FOLD_METRICS}
                        for name in extra_tests},
        "pooled_test": {**pooled_metrics, **detail},
    }
    write_json(summary, run.path("_cv.json"))
    speakers = pd.DataFrame([{"speaker": s, **v, "fold": int(pooled.loc[pooled["ActorID"].astype(str) == s, "fold"].iloc[0])}
                             for s, v in detail["per_speaker"].items()]).sort_values(["accuracy", "speaker"])
    write_csv(speakers, run.path("_cv_speakers.csv"))
    plot_folds(folds, SCORES, run.path("_cv_folds.png"), f"{card.name}: {len(splits)}-fold speaker-grouped cross-validation")
    plot_speaker_accuracy(detail["per_speaker"], run.path("_cv_speakers.png"), f"{card.name}: accuracy per speaker (each tested once)")

    print(f"{len(splits)}-fold speaker-grouped cross-validation, {run.stem}:")
    for k in FOLD_METRICS:
        print(f"  test {k:8s} {summary['test'][k]['mean']:.4f} ± {summary['test'][k]['std']:.4f}")
    for name, m in summary["extra_tests"].items():
        print(f"  {name}: " + " ".join(f"{k} {m[k]['mean']:.4f} ± {m[k]['std']:.4f}" for k in FOLD_METRICS))
    w = detail["worst_speaker"]
    print(f"  worst speaker {w['speaker']} ({w['label']}): accuracy {w['accuracy']:.3f} on {w['clips']} clips")
    print(f"saved {run.path('_cv.json')}, {run.path('_cv_speakers.csv')} and plots; the fold models are in {run.path('_cv')}/")
    return summary
