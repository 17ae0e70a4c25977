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


def fit_temperature(logits, y_true, low: float = 1.0, high: float = 20.0, steps: int = 60) -> float:
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


def format_metrics(m: dict, prefix: str = "") -> str:
    keys = [k for k in ("loss", "accuracy", "f1", "precision", "recall", "uar") if k in m]
    return " ".join(f"{prefix}{k} {m[k]:.4f}" for k in keys)


def format_confusion(matrix: list[list[int]], classes: list[str]) -> str:
    """The confusion matrix as a text table: rows are true classes, columns predictions."""
    width = max(7, *(len(c) for c in classes)) + 1
    lines = ["true \\ pred".ljust(width) + "".join(c[:width - 1].rjust(width) for c in classes)]
    for name, row in zip(classes, matrix):
        lines.append(name[:width - 1].ljust(width) + "".join(str(v).rjust(width) for v in row))
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
