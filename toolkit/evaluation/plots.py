"""Plots people look at instead of reading numbers: confusion matrix, training curves, spectrograms."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np

from toolkit.fileio import atomic_path


def class_colours(classes) -> dict:
    """One colour per class name wherever a plot shows classes (by sorted name, so Female is the same blue in a
    speaker bar chart as in a recording's windows, whichever order a run card lists them in)."""
    return {c: plt.cm.tab10(i % 10) for i, c in enumerate(sorted(classes))}


def wrapped(title: str, width_inches: float, fontsize: float = 12) -> str:
    """A title broken into lines that fit the figure's width (a long run name no longer runs past the edges)."""
    import textwrap

    return textwrap.fill(title, max(20, int(width_inches * 72 / (0.55 * fontsize))), break_on_hyphens=False)


def frequency_ticks(bands: np.ndarray, min_gap: float = 0.065) -> list[tuple[float, str]]:
    """(row, label) of the round frequencies within the mel bands, from the top down, leaving out one whose row
    is nearer than min_gap of the image's height to the last one kept (100 Hz and 250 Hz overlapped)."""
    ticks: list[tuple[float, str]] = []
    for hz in (16000, 8000, 4000, 2000, 1000, 500, 250, 100):
        if bands[0] <= hz <= bands[-1]:
            row = int(np.abs(bands - hz).argmin()) + 0.5
            if not ticks or ticks[-1][0] - row >= min_gap * len(bands):
                ticks.append((row, f"{hz / 1000:g}k" if hz >= 1000 else str(hz)))
    return ticks[::-1]


def save_figure(fig: plt.Figure, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_confusion_matrix(matrix: list[list[int]], classes: list[str], path: str, title: str = "") -> None:
    m = np.asarray(matrix)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    size = 2.2 + 0.7 * len(classes)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{m[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(wrapped(title, size, 10), fontsize=10)
    save_figure(fig, path)


def plot_training_curves(history: list[dict], path: str, title: str = "", saved_epoch: int | None = None) -> None:
    """Loss (train and val) and validation accuracy/F1 per epoch, with the epoch whose weights were kept marked."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        if any(key in h for h in history):
            ax_loss.plot(epochs, [h.get(key, np.nan) for h in history], marker=".", label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    for key in ("val_accuracy", "val_f1", "val_uar"):
        if any(key in h for h in history):
            ax_score.plot(epochs, [h.get(key, np.nan) for h in history], marker=".", label=key.removeprefix("val_"))
    ax_score.set_xlabel("epoch")
    ax_score.set_ylabel("validation score")
    ax_score.set_ylim(0, 1)
    for ax in (ax_loss, ax_score):
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    if saved_epoch is not None:
        for ax in (ax_loss, ax_score):
            ax.axvline(saved_epoch, color="grey", linestyle="--", linewidth=1, label=f"saved (epoch {saved_epoch})")
    ax_loss.legend(fontsize=8)
    ax_score.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)


def plot_reliability(curves: dict[str, list[dict]], path: str, title: str = "") -> None:
    """Reliability diagram: accuracy against confidence per bin (metrics.reliability), one line per curve; a
    calibrated model's points lie on the diagonal."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(4.8, 5.2), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    drawn: dict[str, list] = {}  # name -> points; a curve equal to one drawn (T = 1) joins its legend entry
    for name, bins in curves.items():
        points = [(b["confidence"], b["accuracy"]) for b in bins if b["count"]]
        same = next((k for k, v in drawn.items() if len(v) == len(points) and np.allclose(v, points)), None)
        if same is not None:
            drawn[f"{same} = {name}"] = drawn.pop(same)
        else:
            drawn[name] = points
    for j, (name, points) in enumerate(drawn.items()):
        ax.plot(*zip(*points) if points else ([], []), marker="os^D"[j % 4], markersize=7 - 2 * min(j, 2),
                color=plt.cm.tab10(j), label=name)
    first = next(iter(curves.values()))
    counts.bar([(b["low"] + b["high"]) / 2 for b in first], [b["count"] for b in first], width=1 / len(first), color="grey")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, loc="upper left")
    counts.set_xlabel("confidence (highest class probability)")
    counts.set_ylabel("clips")
    ax.set_title(wrapped(title, 4.8, 10), fontsize=10)
    save_figure(fig, path)


def plot_recording(image: np.ndarray, params, path: str, title: str = "",
                   windows: list[tuple[float, float, str | None]] = (), classes: list[str] = ()) -> None:
    """recording_figure saved as a PNG at `path` (predict.py --plot)."""
    save_figure(recording_figure(image, params, title, windows, classes), path)


def recording_figure(image: np.ndarray, params, title: str = "",
                     windows: list[tuple[float, float, str | None]] = (), classes: list[str] = ()) -> plt.Figure:
    """A recording's spectrogram (stage 2's uint8 image) with a Hz axis and a dB colour bar; below it the windows a
    model classified, each shaded by the class it predicted (unshaded: skipped as quiet). The caller saves or shows
    it (the web demo hands the figure to the page without writing a file) and closes it."""
    from toolkit.features.mel import FIXED_TOP_DB, mel_frequencies

    seconds = image.shape[1] * params.hop_length / params.sr
    top = FIXED_TOP_DB if params.db_ref == "fixed" else 0.0
    width = 8.5
    fig, ((ax, bar), (strip, key)) = plt.subplots(2, 2, figsize=(width, 3.8), sharex="col",
                                                  gridspec_kw={"height_ratios": [5, 1], "width_ratios": [40, 1]})
    shown = ax.imshow(image.astype(float) * params.top_db / 255 - params.top_db + top, cmap="magma", aspect="auto",
                      extent=(0, seconds, 0, image.shape[0]))
    bands = mel_frequencies(params)
    ax.set_yticks(*zip(*frequency_ticks(bands)))
    ax.set_ylabel("Hz (mel scale)")
    ax.set_title(wrapped(title, width, 9), fontsize=9)
    fig.colorbar(shown, cax=bar, label="dB re full scale" if params.db_ref == "fixed" else "dB re the peak")
    key.axis("off")
    colours = class_colours(classes)
    for row, (start, end, label) in enumerate(windows):
        y = row % 2  # overlapping windows alternate between two lanes
        strip.add_patch(plt.Rectangle((start, y * 0.5), end - start, 0.45, facecolor=colours.get(label, "white"),
                                      edgecolor="black", linewidth=0.5, alpha=0.8 if label else 0.3))
    strip.set_ylim(0, 1)
    strip.set_yticks([])
    strip.set_xlabel("time (s)")
    shown_classes = [c for c in classes if any(w[2] == c for w in windows)]
    if shown_classes:
        key.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours[c]) for c in shown_classes], labels=shown_classes,
                   fontsize=7, loc="center left", frameon=False)
    return fig


def plot_speaker_accuracy(per_speaker: dict, path: str, title: str = "") -> None:
    """One bar per speaker (worst first), coloured by the speaker's class: who the model fails on."""
    items = sorted(per_speaker.items(), key=lambda kv: (kv[1]["accuracy"], kv[0]))
    labels = sorted({v["label"] for _, v in items})
    colours = class_colours(labels)
    fig, ax = plt.subplots(figsize=(max(5, 0.22 * len(items) + 2.5), 3.4))
    ax.bar(range(len(items)), [v["accuracy"] for _, v in items], color=[colours[v["label"]] for _, v in items])
    ax.set_xticks(range(len(items)), [k for k, _ in items], rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_xlabel("speaker")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours[c]) for c in labels], labels=labels, fontsize=7,
              loc="upper left", bbox_to_anchor=(1.01, 1), title="class", title_fontsize=7)  # beside the bars, not on them
    ax.set_title(title)
    save_figure(fig, path)


def plot_folds(folds: list[dict], metrics: tuple[str, ...], path: str, title: str = "") -> None:
    """Test scores of each cross-validation fold side by side, with the mean as a dashed line."""
    fig, ax = plt.subplots(figsize=(2 + 1.2 * len(folds), 3.4))
    width = 0.8 / len(metrics)
    for j, m in enumerate(metrics):
        values = [f["test"][m] for f in folds]
        ax.bar(np.arange(len(folds)) + j * width, values, width, label=f"{m} (mean {np.mean(values):.3f})",
               color=plt.cm.tab10(j))
        ax.axhline(np.mean(values), color=plt.cm.tab10(j), linestyle="--", linewidth=1)
    ax.set_xticks(np.arange(len(folds)) + width * (len(metrics) - 1) / 2, [f"fold {f['fold']}" for f in folds])
    ax.set_ylim(0, 1)
    ax.set_ylabel("test score")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title)
    save_figure(fig, path)


def plot_grouped_bars(values: dict[str, dict[str, float]], path: str, ylabel: str, title: str = "") -> None:
    """values[group][series]: one cluster per group (e.g. category), one colour per series (e.g. model), labelled."""
    groups = list(values)
    series = list(dict.fromkeys(s for g in groups for s in values[g]))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(3 + len(groups) * (0.6 + 0.45 * len(series)), 3.8))
    for j, s in enumerate(series):
        present = [i for i, g in enumerate(groups) if s in values[g]]
        bars = ax.bar([i + j * width for i in present], [values[groups[i]][s] for i in present], width, label=s,
                      color=plt.cm.tab10(j % 10))
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.set_xticks(np.arange(len(groups)) + width * (len(series) - 1) / 2, groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(title)
    save_figure(fig, path)


def plot_groups(report: dict, path: str, title: str = "") -> None:
    """Per-group weighted F1 (accuracy where each group holds one class) with 95 % speaker-bootstrap intervals, one block per demographic column, the headline F1
    and its interval as a band; groups too small to rank in grey (toolkit/evaluation/fairness.py)."""
    rows = [(column, g, v) for column, c in report["columns"].items() for g, v in c["groups"].items()]
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.32 * max(len(rows), 1)))
    overall = report["overall"]
    if overall["f1_ci"][0] is not None:
        ax.axvspan(*overall["f1_ci"], color="grey", alpha=0.15, label=f"all: F1 {overall['f1']:.3f} (95% CI)")
    ax.axvline(overall["f1"], color="grey", linewidth=1)
    columns = list(report["columns"])
    for y, (column, g, v) in enumerate(rows):
        metric = report["columns"][column]["metric"]
        value, (low, high) = v[metric], v[metric + "_ci"]
        colour = plt.cm.tab10(columns.index(column) % 10) if v["ranked"] else "lightgrey"
        if low is not None:
            ax.errorbar(value, y, xerr=[[value - low], [high - value]], fmt="o", color=colour, capsize=3)
        else:
            ax.plot(value, y, "o", color=colour)
    ax.set_yticks(range(len(rows)), [f"{c}{' (accuracy)' if report['columns'][c]['metric'] == 'accuracy' else ''}: {g} "
                                     f"({v['speakers']} spk{'' if v['ranked'] else ', not ranked'})" for c, g, v in rows],
                  fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("weighted F1 (accuracy where marked), 95% CI from a bootstrap over speakers")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes: it never hides a point
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)
