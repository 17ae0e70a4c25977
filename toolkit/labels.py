"""The four categories and their class lists. Label index = position in the list (the seed's order)."""
from __future__ import annotations

import pandas as pd

from .errors import ToolkitError

CLASSES: dict[str, list[str]] = {
    "sex": ["Male", "Female"],
    "age": ["<30s", "30s", "40s", "50s", ">60s"],
    "race": ["Caucasian", "African American", "Asian"],
    "emotion": ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"],
}
CATEGORIES = list(CLASSES)


def check_category(category: str) -> str:
    if category not in CLASSES:
        raise ToolkitError(f"unknown category '{category}': choose one of {', '.join(CATEGORIES)}")
    return category


def age_bin(age: int) -> str:
    """CREMA-D age in years -> the seed's age group."""
    if age <= 29:
        return "<30s"
    if age >= 60:
        return ">60s"
    return f"{(int(age) // 10) * 10}s"


def encode_labels(df: pd.DataFrame, category: str, source: str) -> list[int]:
    """Class indices for the `category` column of `df`; any value outside the class list is an error."""
    classes = CLASSES[check_category(category)]
    if category not in df.columns:
        raise ToolkitError(f"{source}: no '{category}' column; re-run stage 1/2 with --category {category}")
    values = df[category].astype(str)
    bad = sorted(set(values) - set(classes))
    if bad:
        raise ToolkitError(
            f"{source}: label(s) {bad[:5]} in column '{category}' are not in the class list {classes}; "
            f"fix or drop those rows"
        )
    index = {c: i for i, c in enumerate(classes)}
    return [index[v] for v in values]
