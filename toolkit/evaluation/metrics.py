"""Classification metrics: accuracy, weighted F1/precision/recall (the seed's), unweighted average recall, and how well
the probabilities are calibrated (expected calibration error) with the temperature that calibrates them."""
from __future__ import annotations

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
    # imported here: sklearn takes ~1 s to import, and predict.py and the web demo never score labels
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, recall_score

    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=range(num_classes), average="weighted", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
        "uar": float(recall_score(y_true, y_pred, labels=range(num_classes), average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=range(num_classes)).tolist(),
    }


ECE_BINS = 15  # the usual choice (Guo et al. 2017)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by how many predictions fall in each."""
    probs, y_true = np.asarray(probs), np.asarray(y_true)
    if not len(probs):
        return 0.0
    confidence, predicted = probs.max(1), probs.argmax(1)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs((predicted[inside] == y_true[inside]).mean() - confidence[inside].mean())
    return float(total / len(probs))


def reliability(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per confidence bin: its range, how many predictions, their mean confidence and accuracy (the diagram's bars)."""
    confidence, correct = np.asarray(probs).max(1), np.asarray(probs).argmax(1) == np.asarray(y_true)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return [{"low": b / bins, "high": (b + 1) / bins, "count": int((which == b).sum()),
             "confidence": float(confidence[which == b].mean()) if (which == b).any() else None,
             "accuracy": float(correct[which == b].mean()) if (which == b).any() else None} for b in range(bins)]


TEMPERATURE_RANGE = (1.0, 20.0)


def fit_temperature(logits, y_true, low: float = TEMPERATURE_RANGE[0], high: float = TEMPERATURE_RANGE[1],
                    steps: int = 60) -> float:
    """The temperature T that minimises the negative log-likelihood of softmax(logits / T) (temperature scaling,
    Guo et al. 2017): a golden-section search over log T, deterministic and bounded. T never goes below 1: a
    validation split of the training corpus's own voices often asks for sharper probabilities (T 0.05-0.9 on the demo
    corpus), and sharpening made them worse on unseen voices every time it was measured (experiments/RESULTS.md,
    "Calibration"), so calibration only ever softens."""
    import math

    import torch
    import torch.nn.functional as F

    logits, y_true = torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(y_true)

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(logits / math.exp(log_t), y_true))

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(steps):
        if nll(c) < nll(d):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    return math.exp((a + b) / 2)


# Temperature scaling is kept only where validation can support it (issue 24): with a few clips one confident error
# decides T (a folder-per-class run with a 6-clip validation split hit the old cap of 20 and flattened every test
# probability to ~0.5 at test accuracy 1.0), and a T that helps the clips it was fitted on can hurt other voices.
MIN_CALIBRATION_CLIPS = 100
MIN_CALIBRATION_SPEAKERS = 4  # speaker-disjoint halves for the held-out check need 2+ speakers each
CALIBRATION_MARGIN = 0.02  # the relative drop in held-out validation NLL a temperature must bring to be kept


def nll_and_ece(logits, y_true, temperature: float = 1.0) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    logits, y_true = torch.as_tensor(logits, dtype=torch.float64) / temperature, torch.as_tensor(y_true)
    return float(F.cross_entropy(logits, y_true)), expected_calibration_error(logits.softmax(1).numpy(), y_true.numpy())


def choose_temperature(logits, y_true, speakers=None) -> tuple[float, str]:
    """The calibration temperature for these validation logits and why: T = 1 unless validation has at least
    MIN_CALIBRATION_CLIPS clips (and MIN_CALIBRATION_SPEAKERS speakers where `speakers` is given), a temperature
    fitted on one half of it (by speaker) lowers the other half's NLL by CALIBRATION_MARGIN without raising its
    ECE (both ways round), and the temperature fitted on all of it stays inside fit_temperature's range."""
    y_true = np.asarray(y_true)
    n = len(y_true)
    if n < MIN_CALIBRATION_CLIPS:
        return 1.0, f"not fitted: validation has {n} clips, fewer than the {MIN_CALIBRATION_CLIPS} a temperature needs"
    groups = np.asarray(speakers).astype(str) if speakers is not None else np.arange(n).astype(str)
    names = np.unique(groups)
    if speakers is not None and len(names) < MIN_CALIBRATION_SPEAKERS:
        return 1.0, (f"not fitted: validation has {len(names)} speaker(s), fewer than the {MIN_CALIBRATION_SPEAKERS} "
                     f"a temperature needs")
    halves = [np.isin(groups, names[0::2]), np.isin(groups, names[1::2])]
    before, after = np.zeros(2), np.zeros(2)  # held-out (NLL, ECE) summed over both halves, T = 1 and fitted T
    logits = np.asarray(logits, dtype=np.float64)
    for fit_on, score_on in (halves, halves[::-1]):
        t = fit_temperature(logits[fit_on], y_true[fit_on])
        before += nll_and_ece(logits[score_on], y_true[score_on])
        after += nll_and_ece(logits[score_on], y_true[score_on], t)
    held_out = f"held-out validation NLL {before[0] / 2:.4f} -> {after[0] / 2:.4f}, ECE {before[1] / 2:.4f} -> {after[1] / 2:.4f}"
    if after[0] > (1 - CALIBRATION_MARGIN) * before[0] or after[1] > before[1]:
        return 1.0, f"not kept: a temperature fitted on half the validation {'speakers' if speakers is not None else 'clips'} " \
                    f"did not lower the other half's NLL by {CALIBRATION_MARGIN:.0%} without raising its ECE ({held_out})"
    temperature = fit_temperature(logits, y_true)
    if temperature >= 0.99 * TEMPERATURE_RANGE[1]:
        return 1.0, f"not kept: the fitted temperature reached the end of its range ({TEMPERATURE_RANGE[1]:g})"
    return temperature, f"fitted on the validation split ({held_out})"


def format_metrics(m: dict, prefix: str = "") -> str:
    keys = [k for k in ("loss", "accuracy", "f1", "precision", "recall", "uar") if k in m]
    return " ".join(f"{prefix}{k} {m[k]:.4f}" for k in keys)


def format_confusion(matrix: list[list[int]], classes: list[str]) -> str:
    """The confusion matrix as a text table: rows are true classes, columns predictions."""
    corner = "true \\ pred"
    first = max(len(corner), *(len(c) for c in classes)) + 1  # the row names' column, as wide as its header
    width = max(7, *(len(c) for c in classes)) + 1
    lines = [corner.ljust(first) + "".join(c.rjust(width) for c in classes)]
    for name, row in zip(classes, matrix):
        lines.append(name.ljust(first) + "".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


def breakdown(frame, y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Per-class precision/recall/F1 and, when `frame` has an ActorID column, per-speaker accuracy and the worst
    speaker: averages hide the one unusual voice a model gets wrong."""
    from sklearn.metrics import precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=range(len(classes)), average=None, zero_division=0)
    out: dict = {"per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                                   "support": int(support[i])} for i, c in enumerate(classes)}}
    if "ActorID" not in getattr(frame, "columns", []):
        return out
    speakers = {}
    for speaker, rows in frame.groupby(frame["ActorID"].astype(str)).indices.items():
        own = np.unique(y_true[rows])  # a speaker has one sex/age/race, but every emotion
        speakers[speaker] = {"accuracy": float(np.mean(y_true[rows] == y_pred[rows])), "clips": int(len(rows)),
                             "label": classes[int(own[0])] if len(own) == 1 else "mixed"}
    worst = min(speakers, key=lambda s: (speakers[s]["accuracy"], s))
    return {**out, "per_speaker": speakers, "worst_speaker": {"speaker": worst, **speakers[worst]}}
