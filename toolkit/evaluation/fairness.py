"""Does a model work equally well for everyone? Scores per demographic group, with confidence intervals.

For every demographic column the data has (sex, age, race, ethnicity, or any column asked for) the report gives the
weighted F1 and accuracy of each group, the worst group and the largest gap between groups (by F1; by accuracy where each group holds one class, e.g. a sex
model grouped by sex), and the headline F1
itself, each with a 95 % interval from a bootstrap over speakers: the clips of one voice are not independent, so a
replicate draws whole speakers with replacement (within each group, when the column is a speaker's attribute, so
every replicate holds every group). Groups with fewer than MIN_SPEAKERS speakers are shown but not ranked: their
score says more about those few voices than about the group.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from toolkit.errors import ToolkitError

DEMOGRAPHIC_COLUMNS = ("sex", "gender", "age", "age_group", "race", "ethnicity")  # matched case-insensitively
MAX_GROUPS = 12  # a column with more distinct values (e.g. age in years) is not a grouping
MIN_SPEAKERS = 3  # a group with fewer speakers is shown, not ranked
REPLICATES = 1000
CONFIDENCE = 0.95
SPEAKER_COLUMN = "ActorID"


def group_columns(frame: pd.DataFrame, asked: list[str] | None = None, source: str = "the data") -> list[str]:
    """The demographic columns of `frame` (DEMOGRAPHIC_COLUMNS with at most MAX_GROUPS values) and those `asked` for
    (a missing one is a one-line error)."""
    missing = [c for c in asked or [] if c not in frame.columns]
    if missing:
        raise ToolkitError(f"{source}: no column {missing[0]!r} for --group_column (its columns: "
                           f"{', '.join(map(str, frame.columns))}); pass one of them")
    found = [c for c in frame.columns if str(c).lower() in DEMOGRAPHIC_COLUMNS
             and 2 <= frame[c].dropna().astype(str).nunique() <= MAX_GROUPS]
    return list(dict.fromkeys([*found, *(asked or [])]))


def confusion_by_unit(y_true: np.ndarray, y_pred: np.ndarray, unit: np.ndarray, units: int, k: int) -> np.ndarray:
    """(units, k*k) confusion counts of each unit's clips (rows: true class, columns: predicted)."""
    cells = unit * k * k + y_true * k + y_pred
    return np.bincount(cells, minlength=units * k * k).reshape(units, k * k).astype(np.float64)


def scores(confusion: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted F1 and accuracy of (..., k*k) confusion counts (sklearn's definitions, zero_division 0); NaN where
    there are no clips."""
    c = confusion.reshape(*confusion.shape[:-1], k, k)
    tp, support, predicted = np.diagonal(c, axis1=-2, axis2=-1), c.sum(-1), c.sum(-2)
    total = support.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(support + predicted > 0, 2 * tp / np.maximum(support + predicted, 1e-300), 0.0)
        weighted = (f1 * support).sum(-1) / total
        accuracy = tp.sum(-1) / total
    return np.where(total > 0, weighted, np.nan), np.where(total > 0, accuracy, np.nan)


def interval(values: np.ndarray) -> list[float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    values = values[np.isfinite(values)]
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))] if len(values) else [None, None]


def draws(strata: list[np.ndarray], speakers: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(replicates, speakers) how often each speaker is drawn: each stratum's speakers resampled with replacement."""
    counts = np.zeros((replicates, speakers))
    rows = np.arange(replicates)[:, None]
    for members in strata:
        np.add.at(counts, (rows, members[rng.integers(0, len(members), size=(replicates, len(members)))]), 1)
    return counts


def fairness_report(frame: pd.DataFrame, y_true, y_pred, classes: list[str], columns: list[str],
                    replicates: int = REPLICATES, seed: int = 0) -> dict:
    """The headline F1 with its interval and, per column, every group's F1 and accuracy with intervals, the worst
    ranked group and the largest gap between ranked groups (module docstring). Needs the speaker column ActorID
    (without one each clip counts as its own speaker)."""
    y_true, y_pred, k = np.asarray(y_true, int), np.asarray(y_pred, int), len(classes)
    owner = (frame[SPEAKER_COLUMN] if SPEAKER_COLUMN in frame.columns else pd.Series(range(len(frame)))).astype(str)
    speaker_ids, speaker = np.unique(owner.to_numpy(), return_inverse=True)
    n = len(speaker_ids)
    rng = np.random.default_rng(seed)
    per_speaker = confusion_by_unit(y_true, y_pred, speaker, n, k)
    f1, accuracy = scores(per_speaker.sum(0), k)
    boot_f1, boot_acc = scores(draws([np.arange(n)], n, replicates, rng) @ per_speaker, k)
    report = {"bootstrap": {"unit": "speaker", "replicates": replicates, "confidence": CONFIDENCE, "seed": seed,
                            "min_speakers": MIN_SPEAKERS},
              "overall": {"f1": float(f1), "f1_ci": interval(boot_f1), "accuracy": float(accuracy),
                          "accuracy_ci": interval(boot_acc), "speakers": n, "clips": len(y_true)},
              "columns": {}}
    for column in columns:
        report["columns"][column] = column_report(frame[column], y_true, y_pred, speaker, n, k, replicates, rng)
    return report


def column_report(values: pd.Series, y_true, y_pred, speaker, n: int, k: int, replicates: int,
                  rng: np.random.Generator) -> dict:
    known = values.notna().to_numpy()
    labels = values.astype(str).to_numpy()
    names = sorted(set(labels[known]))
    groups = {g: known & (labels == g) for g in names}
    # A speaker's attribute (one value per speaker): resample speakers within each group, so every replicate has
    # every group at its own size. Else (a clip's attribute, e.g. emotion): resample all speakers.
    per_speaker_value = pd.Series(labels[known]).groupby(speaker[known]).nunique()
    stratified = bool((per_speaker_value <= 1).all())
    speakers_of = {g: np.unique(speaker[rows]) for g, rows in groups.items()}
    strata = list(speakers_of.values()) if stratified else [np.unique(speaker[known])]
    counts = draws(strata, n, replicates, rng)
    out, boot = {}, {}
    for g, rows in groups.items():
        confusion = confusion_by_unit(y_true[rows], y_pred[rows], speaker[rows], n, k)
        f1, accuracy = scores(confusion.sum(0), k)
        boot_f1, boot_acc = scores(counts @ confusion, k)
        boot[g] = {"f1": boot_f1, "accuracy": boot_acc}
        out[g] = {"f1": float(f1), "f1_ci": interval(boot_f1), "accuracy": float(accuracy),
                  "accuracy_ci": interval(boot_acc), "speakers": len(speakers_of[g]), "clips": int(rows.sum()),
                  "ranked": len(speakers_of[g]) >= MIN_SPEAKERS}
    # Where each group holds one true class (a sex model grouped by sex), a group's weighted F1 is that class's F1
    # with a precision of 1 by construction: accuracy (the class's recall) is the comparable figure there.
    metric = "accuracy" if all(len(np.unique(y_true[rows])) <= 1 for rows in groups.values()) else "f1"
    ranked = [g for g in names if out[g]["ranked"]]
    result = {"groups": out, "metric": metric, "stratified": stratified, "ranked": ranked,
              "not_ranked": [g for g in names if not out[g]["ranked"]]}
    if len(ranked) >= 2:
        stacked = np.stack([boot[g][metric] for g in ranked], 1)  # (replicates, ranked groups)
        worst = min(ranked, key=lambda g: (out[g][metric], g))
        best = max(ranked, key=lambda g: (out[g][metric], g))
        with np.errstate(invalid="ignore"):
            result["worst"] = {"group": worst, "value": out[worst][metric], "ci": interval(np.nanmin(stacked, 1))}
            result["gap"] = {"between": [best, worst], "value": out[best][metric] - out[worst][metric],
                             "ci": interval(np.nanmax(stacked, 1) - np.nanmin(stacked, 1))}
    return result


def fairness_rows(report: dict) -> pd.DataFrame:
    """The report as a table: one row per group of each column (and one for everyone)."""
    o = report["overall"]
    rows = [{"column": "(all)", "group": "(all)", "speakers": o["speakers"], "clips": o["clips"], "f1": o["f1"],
             "f1_low": o["f1_ci"][0], "f1_high": o["f1_ci"][1], "accuracy": o["accuracy"],
             "accuracy_low": o["accuracy_ci"][0], "accuracy_high": o["accuracy_ci"][1], "ranked": True, "note": ""}]
    for column, c in report["columns"].items():
        for g, v in c["groups"].items():
            note = "worst" if c.get("worst", {}).get("group") == g else ""
            if not v["ranked"]:
                note = f"fewer than {report['bootstrap']['min_speakers']} speakers: not ranked"
            rows.append({"column": column, "group": g, "speakers": v["speakers"], "clips": v["clips"], "f1": v["f1"],
                         "f1_low": v["f1_ci"][0], "f1_high": v["f1_ci"][1], "accuracy": v["accuracy"],
                         "accuracy_low": v["accuracy_ci"][0], "accuracy_high": v["accuracy_ci"][1],
                         "ranked": v["ranked"], "note": note})
    return pd.DataFrame(rows)


def describe(report: dict) -> list[str]:
    """Printed lines: the headline F1 with its interval, then per column the worst group and the gap."""
    o = report["overall"]
    lines = [f"F1 {o['f1']:.3f} (95% CI {fmt(o['f1_ci'])}, bootstrap over {o['speakers']} speakers)"]
    for column, c in report["columns"].items():
        m = c["metric"]
        groups = ", ".join(f"{g} {v[m]:.3f} [{fmt(v[m + '_ci'])}]{'' if v['ranked'] else ' (not ranked: ' + str(v['speakers']) + ' speaker(s))'}"
                           for g, v in c["groups"].items())
        line = f"{column} ({'F1' if m == 'f1' else m}): {groups}"
        if "gap" in c:
            line += (f"; worst {c['worst']['group']}, gap {c['gap']['value']:.3f} (95% CI {fmt(c['gap']['ci'])})")
        lines.append(line)
    return lines


def fmt(ci: list) -> str:
    return "n/a" if ci[0] is None else f"{ci[0]:.3f}-{ci[1]:.3f}"


def write_fairness(report: dict, prefix: str, title: str) -> None:
    """{prefix}_groups.json, _groups.csv and _groups.png (per-group F1 with intervals)."""
    from toolkit.evaluation.plots import plot_groups
    from toolkit.fileio import write_csv, write_json

    write_json(report, prefix + "_groups.json")
    write_csv(fairness_rows(report), prefix + "_groups.csv")
    plot_groups(report, prefix + "_groups.png", title)
