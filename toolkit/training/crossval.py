"""Speaker-grouped K-fold cross-validation: K models, each scored on speakers it never heard.

Folds are whole speakers (ActorID): no speaker in two folds, every speaker tested exactly once. Which fold a speaker
is in depends only on its ID, its class (where a speaker has one: folds keep the class mix) and --seed, never on the
order of the rows or the feature type, so runs on mel images, eGeMAPS and encoder features of the same clips get the
same folds and can be fused (fuse_cross_validations); the run card records the assignment. Inside each fold a few
training speakers are held out for validation (model selection, early stopping, calibration), so the test speakers
never influence a choice.
"""
from __future__ import annotations

import copy
import hashlib
import os
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from toolkit.cli import seed_everything
from toolkit.config import TrainConfig
from toolkit.errors import ToolkitError
from toolkit.evaluation.fairness import describe as describe_groups, fairness_report, group_columns, write_fairness
from toolkit.evaluation.metrics import breakdown, classification_metrics
from toolkit.evaluation.plots import plot_folds, plot_speaker_accuracy
from toolkit.fileio import read_json, write_csv, write_json
from toolkit.io.splits import is_copy
from toolkit.runcard import RunCard
from toolkit.training.data import FeatureSet, subset
from toolkit.training.engine import RunFiles, evaluate, fit, metrics_of, public, score_probabilities

SCORES = ("accuracy", "f1", "uar")  # plotted per fold (higher is better)
FOLD_METRICS = (*SCORES, "ece")  # summarised over folds
VAL_FRACTION = 0.15  # of each fold's training speakers, held out for validation


def speaker_rank(speaker: str, seed: int, salt: str = "") -> str:
    """A speaker's place in a seeded order that depends on its ID and the seed only (not on rows or feature type)."""
    return hashlib.sha256(f"{seed}:{salt}:{speaker}".encode()).hexdigest()


def speaker_classes(frame: pd.DataFrame, label: str) -> dict[str, str | None]:
    """Each speaker's class when it has one (sex, age, race), else None (emotion: every class per speaker)."""
    per = frame.groupby(frame["ActorID"].astype(str))[label].agg(lambda v: set(v.astype(str)))
    return {s: next(iter(v)) if len(v) == 1 else None for s, v in per.items()}


def strata(speakers: list[str], classes: dict[str, str | None], seed: int, salt: str) -> list[list[str]]:
    """The speakers in seeded order, one list per class when every speaker has one class (stratified), else one."""
    by_rank = sorted(speakers, key=lambda s: speaker_rank(s, seed, salt))
    if any(classes[s] is None for s in speakers):
        return [by_rank]
    return [[s for s in by_rank if classes[s] == c] for c in sorted({classes[s] for s in speakers})]


def fold_assignment(frame: pd.DataFrame, label: str, k: int, seed: int) -> dict[str, int]:
    """Fold (1..k) of each speaker: the speakers in seeded order, class by class where each speaker has one, dealt
    round-robin. A function of the speaker IDs, their classes and the seed: two feature types of the same clips, in
    any row order, get the same folds (a fused cross-validation needs that)."""
    classes = speaker_classes(frame, label)
    if not 2 <= k <= len(classes):
        raise ToolkitError(f"--folds {k}: needs 2 to {len(classes)} folds for the {len(classes)} speakers found")
    dealt = [s for group in strata(list(classes), classes, seed, "folds") for s in group]
    return {s: i % k + 1 for i, s in enumerate(dealt)}


def validation_speakers(speakers: list[str], classes: dict[str, str | None], seed: int, fold: int) -> list[str]:
    """About VAL_FRACTION of a fold's training speakers (at least one per class that has two or more), held out."""
    held = []
    for group in strata(speakers, classes, seed, f"val{fold}"):
        n = min(max(1, round(VAL_FRACTION * len(group))), len(group) - 1)
        held += group[:n]
    return sorted(held)


def speaker_folds(frame: pd.DataFrame, label: str, k: int, seed: int) -> list[np.ndarray]:
    """Row positions of each fold's test part: whole speakers, stratified by `label` (fold_assignment)."""
    fold = frame["ActorID"].astype(str).map(fold_assignment(frame, label, k, seed)).to_numpy()
    return [np.flatnonzero(fold == i) for i in range(1, k + 1)]


def fold_splits(frame: pd.DataFrame, label: str, k: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Per fold: row positions of train, val (held-out training speakers) and test (the fold).

    The folds are made of the original clips alone (the same folds as without augmented copies); a copy
    (augmentation.py) trains in every fold whose training part holds its speaker, and is never validated or tested on.
    """
    frame = frame.reset_index(drop=True)
    copies = is_copy(frame).to_numpy()
    originals = frame[~copies]
    speaker = frame["ActorID"].astype(str)
    classes = speaker_classes(originals, label)
    out = []
    for i, test in enumerate(speaker_folds(originals, label, k, seed), 1):
        test = originals.index.to_numpy()[test]
        is_test = np.zeros(len(frame), bool)
        is_test[test] = True
        train_speakers = sorted(set(speaker[~is_test & ~copies]))
        val = speaker.isin(validation_speakers(train_speakers, classes, seed, i)).to_numpy() & ~is_test
        train = ~is_test & ~val & (~copies | speaker.isin(train_speakers).to_numpy())
        out.append({"train": np.flatnonzero(train), "val": np.flatnonzero(val & ~copies), "test": np.asarray(test)})
    return out


def assignment_record(frame: pd.DataFrame, label: str, k: int, seed: int) -> dict:
    """What the run card keeps of the folds: how they were made and every speaker's fold and validation role."""
    speaker = frame["ActorID"].astype(str)
    splits = fold_splits(frame, label, k, seed)
    return {"method": "speaker-hash (sha256 of seed and speaker ID), dealt round-robin per class", "seed": seed, "k": k,
            "fold_of_speaker": fold_assignment(frame, label, k, seed),
            "validation_speakers": {str(i): sorted(set(speaker.iloc[p["val"]])) for i, p in enumerate(splits, 1)}}


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
    card = copy.deepcopy(card)
    card.split["assignment"] = assignment_record(data.frame, category, k, config.seed)
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

    summary = summarize_folds(folds, predictions, classes, category, run, card.name,
                              {"run": card.to_dict(), "folds": len(splits)})
    summary["extra_tests"] = {name: {k: mean_std([f["extra_tests"][name][k] for f in folds]) for k in FOLD_METRICS}
                              for name in extra_tests}
    write_json(summary, run.path("_cv.json"))
    for name, m in summary["extra_tests"].items():
        print(f"  {name}: " + " ".join(f"{k} {m[k]['mean']:.4f} ± {m[k]['std']:.4f}" for k in FOLD_METRICS))
    print(f"saved {run.path('_cv.json')}, {run.path('_cv_speakers.csv')} and plots; the fold models are in {run.path('_cv')}/")
    return summary


def summarize_folds(folds: list[dict], predictions: list[pd.DataFrame], classes: list[str], category: str,
                    run: RunFiles, name: str, head: dict) -> dict:
    """Mean ± std over folds, the pooled test predictions (every speaker tested once) per class, per speaker and per
    demographic group (toolkit/evaluation/fairness.py); writes {stem}_cv.json's body, _cv_speakers.csv and the plots; prints."""
    pooled = pd.concat(predictions, ignore_index=True)
    index = {c: j for j, c in enumerate(classes)}
    y_true = pooled[category].astype(str).map(index).to_numpy()
    y_pred = pooled["predicted"].astype(str).map(index).to_numpy()
    detail = breakdown(pooled, y_true, y_pred, classes)
    groups = fairness_report(pooled, y_true, y_pred, classes, group_columns(pooled))
    summary = {**head, "fold_results": folds,
               "test": {k: mean_std([f["test"][k] for f in folds]) for k in FOLD_METRICS},
               "pooled_test": {**classification_metrics(y_true, y_pred, len(classes)), **detail, "groups": groups}}
    speakers = pd.DataFrame([{"speaker": s, **v, "fold": int(pooled.loc[pooled["ActorID"].astype(str) == s, "fold"].iloc[0])}
                             for s, v in detail["per_speaker"].items()]).sort_values(["accuracy", "speaker"])
    write_csv(speakers, run.path("_cv_speakers.csv"))
    plot_folds(folds, SCORES, run.path("_cv_folds.png"), f"{name}: {len(folds)}-fold speaker-grouped cross-validation")
    plot_speaker_accuracy(detail["per_speaker"], run.path("_cv_speakers.png"), f"{name}: accuracy per speaker (each tested once)")
    write_fairness(groups, run.path("_cv"), f"{name}: pooled test F1 per group")
    print(f"{len(folds)}-fold speaker-grouped cross-validation, {run.stem}:")
    for k in FOLD_METRICS:
        print(f"  test {k:8s} {summary['test'][k]['mean']:.4f} ± {summary['test'][k]['std']:.4f}")
    w = detail["worst_speaker"]
    print(f"  worst speaker {w['speaker']} ({w['label']}): accuracy {w['accuracy']:.3f} on {w['clips']} clips")
    for line in describe_groups(groups):
        print(f"  pooled {line}")
    return summary


def fold_predictions(cv_json: str, fold: int, split: str) -> pd.DataFrame:
    """A fold model's per-clip predictions (split 'test' or 'val') as its run wrote them."""
    stem = os.path.basename(cv_json).removesuffix("_cv.json")
    path = os.path.join(os.path.dirname(cv_json), f"{stem}_cv", f"fold{fold}", f"{stem}_{split}_predictions.csv")
    if not os.path.isfile(path):
        raise ToolkitError(f"{path}: not found; the cross-validation run of {cv_json} is incomplete (or was made by an "
                           f"earlier version, without {split} predictions): re-run it")
    return pd.read_csv(path, keep_default_na=False)


def aligned(tables: list[pd.DataFrame], classes: list[str]) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The clips (by Audio_file_name) every member scored, in the first member's order, and each member's
    probabilities of them."""
    common = set.intersection(*(set(t["Audio_file_name"].astype(str)) for t in tables))
    first = tables[0][tables[0]["Audio_file_name"].astype(str).isin(common)].reset_index(drop=True)
    probs = []
    for t in tables:
        t = t.set_index(t["Audio_file_name"].astype(str))
        probs.append(t.loc[first["Audio_file_name"].astype(str), [f"p_{c}" for c in classes]].to_numpy(np.float64))
    return first, probs


def fuse_cross_validations(cv_jsons: list[str], weights: list[float] | str | None, folder: str) -> dict:
    """Fuse cross-validation runs of one category on the same folds (e.g. eGeMAPS mlp + mel cnn3): per fold the
    weighted mean of the fold models' calibrated test probabilities (toolkit/evaluation/fusion.py; weights given, equal, or
    'validation': chosen on each fold's validation speakers), scored like a cross-validation of its own."""
    from toolkit.evaluation.fusion import FUSED, check_fusable, choose_weights, fuse

    summaries = [read_json(p, "cross-validation summary", "re-run the cross-validation") for p in cv_jsons]
    for path, s in zip(cv_jsons, summaries):
        if not isinstance(s, dict) or not isinstance(s.get("run"), dict) or not isinstance(s.get("folds"), int):
            raise ToolkitError(f"{path}: not a cross-validation summary (train_cnn.py --folds writes {{model}}_{{category}}_cv.json)")
    cards = [RunCard.from_dict(s["run"], p) for s, p in zip(summaries, cv_jsons)]
    check_fusable(cv_jsons, cards)
    folds_of = [(c.split.get("assignment") or {}).get("fold_of_speaker") for c in cards]
    for path, f in zip(cv_jsons[1:], folds_of[1:]):
        if f is None or f != folds_of[0]:
            raise ToolkitError(f"{path}: its folds are not {cv_jsons[0]}'s (or were not recorded); run every member's "
                               f"cross-validation with the same --folds and --seed on the same speakers")
    classes, category = cards[0].classes, cards[0].category
    run = RunFiles(folder, f"{FUSED}_{category}")
    folds, predictions, chosen = [], [], []
    for i in range(1, summaries[0]["folds"] + 1):
        test, probs = aligned([fold_predictions(p, i, "test") for p in cv_jsons], classes)
        w = weights
        if weights == "validation":
            val, val_probs = aligned([fold_predictions(p, i, "val") for p in cv_jsons], classes)
            w = choose_weights(val_probs, val[category].astype(str).map({c: j for j, c in enumerate(classes)}).to_numpy())
        fused = fuse(probs, w)
        chosen.append(list(w) if w is not None else [1 / len(cv_jsons)] * len(cv_jsons))
        y = test[category].astype(str).map({c: j for j, c in enumerate(classes)}).to_numpy()
        m = score_probabilities(fused, y, len(classes))
        folds.append({"fold": i, "weights": chosen[-1], "test": {k: m[k] for k in FOLD_METRICS},
                      "test_speakers": sorted(test["ActorID"].astype(str).unique())})
        pred = test.assign(predicted=[classes[j] for j in fused.argmax(1)],
                           **{f"p_{c}": fused[:, j].round(6) for j, c in enumerate(classes)})
        predictions.append(pred.assign(fold=i))
    head = {"fusion": {"members": [os.path.abspath(p) for p in cv_jsons], "weights": chosen,
                       "weights_chosen_on": "each fold's validation speakers" if weights == "validation" else None,
                       "members_test": {os.path.basename(p): {k: s["test"][k] for k in FOLD_METRICS} for p, s in zip(cv_jsons, summaries)}},
            "run": {**cards[0].to_dict(), "model": FUSED}, "folds": len(folds)}
    summary = summarize_folds(folds, predictions, classes, category, run, f"{FUSED} · {category}", head)
    write_json(summary, run.path("_cv.json"))
    print("  members: " + "; ".join(f"{os.path.basename(p)} f1 {s['test']['f1']['mean']:.4f} ± {s['test']['f1']['std']:.4f}"
                                    for p, s in zip(cv_jsons, summaries)))
    return summary
