"""Categories and their class lists. A category is any label column of the data; label index = position in its class
list. CREMA-D's four categories keep the seed's fixed lists (and order); any other category's classes come from the
data (sorted) or from the user (stage 1's --classes), and travel with the data (stage 1 and 2's JSON manifests) and
with every model (its run card)."""
from __future__ import annotations

import re

import pandas as pd

from toolkit.errors import ToolkitError

CLASSES: dict[str, list[str]] = {
    "sex": ["Male", "Female"],
    "age": ["<30s", "30s", "40s", "50s", ">60s"],
    "race": ["Caucasian", "African American", "Asian"],
    "emotion": ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"],
}
CATEGORIES = list(CLASSES)  # CREMA-D's
CATEGORY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # it names files ({category}_train.csv): no paths, no spaces


def check_category(category: str) -> str:
    if not CATEGORY_NAME.match(str(category)):
        raise ToolkitError(f"--category {category!r}: a category is a label column's name (letters, digits, '_', '.', "
                           f"'-'), e.g. {', '.join(CATEGORIES)}")
    return category


def classes_for(category: str, labels, given: list[str] | None = None) -> list[str]:
    """The class list of a category: `given`, else CREMA-D's for its four categories, else the labels found, sorted."""
    if given:
        return [str(c) for c in given]
    if category in CLASSES:
        return CLASSES[category]
    return sorted({str(v) for v in labels})


def age_bin(age: int) -> str:
    """CREMA-D age in years -> the seed's age group."""
    if age <= 29:
        return "<30s"
    if age >= 60:
        return ">60s"
    return f"{(int(age) // 10) * 10}s"


def encode_labels(df: pd.DataFrame, category: str, source: str, classes: list[str]) -> list[int]:
    """Class indices for the `category` column of `df`; any value outside `classes` is an error."""
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
