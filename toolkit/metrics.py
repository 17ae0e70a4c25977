"""Classification metrics: accuracy, weighted F1/precision/recall (the seed's), unweighted average recall."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, recall_score


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict:
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
