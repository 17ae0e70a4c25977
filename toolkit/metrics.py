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
