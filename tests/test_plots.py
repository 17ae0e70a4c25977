"""The plots read as they should: nothing hides a point or another label, titles fit, a class keeps its colour."""
import numpy as np
import pytest

import toolkit.evaluation.plots as plots
from toolkit.features.mel import MelParams


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions make, kept open instead of saved."""
    made = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: made.append(fig))
    yield made
    for fig in made:
        plots.plt.close(fig)


def extent(artist):
    return artist.get_window_extent(artist.figure.canvas.get_renderer())


def overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def group_report():
    def group(f1, speakers):
        return {"f1": f1, "f1_ci": [max(f1 - 0.1, 0), min(f1 + 0.1, 1)], "speakers": speakers, "ranked": True}

    return {"overall": {"f1": 0.5, "f1_ci": [0.4, 0.6]},
            "columns": {"sex": {"metric": "f1", "groups": {"Male": group(0.02, 5), "Female": group(0.98, 5)}},
                        "age": {"metric": "f1", "groups": {"20-29": group(0.01, 3), "60+": group(0.5, 3)}}}}


def test_the_per_group_legend_sits_beside_the_axes_where_it_hides_no_point(figures):
    plots.plot_groups(group_report(), "groups.png", "cnn3_sex: test F1 per group")
    ax = figures[0].axes[0]
    legend, axes = extent(ax.get_legend()), extent(ax)
    assert legend.x0 >= axes.x1  # outside, to the right: points at F1 0 or 1, top or bottom, stay visible


def test_a_class_has_one_colour_in_every_plot(figures):
    per_speaker = {"1001": {"accuracy": 0.9, "label": "Male"}, "1002": {"accuracy": 0.8, "label": "Female"}}
    plots.plot_speaker_accuracy(per_speaker, "speakers.png")
    bars = {label: bar.get_facecolor() for label, bar in zip(["Female", "Male"], figures[0].axes[0].patches)}  # worst first
    image = np.zeros((180, 40), dtype=np.uint8)
    figure = plots.recording_figure(image, MelParams(), "x", [(0.0, 0.5, "Male"), (0.25, 0.75, "Female")], ["Male", "Female"])
    strip = figure.axes[2]
    windows = {label: patch.get_facecolor() for label, patch in zip(["Male", "Female"], strip.patches)}
    plots.plt.close(figure)
    assert np.allclose(windows["Male"][:3], bars["Male"][:3]) and np.allclose(windows["Female"][:3], bars["Female"][:3])
    assert not np.allclose(windows["Male"][:3], windows["Female"][:3])


def test_frequency_labels_do_not_overlap():
    image = np.zeros((180, 100), dtype=np.uint8)
    figure = plots.recording_figure(image, MelParams(), "x")
    figure.canvas.draw()
    labels = [t for t in figure.axes[0].get_yticklabels() if t.get_text()]
    boxes = [extent(t) for t in labels]
    plots.plt.close(figure)
    assert [t.get_text() for t in labels] == ["250", "500", "1k", "2k", "4k"]  # 100 Hz sat on 250 Hz
    assert not any(overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def reliability_bins(accuracy: float) -> list[dict]:
    return [{"low": i / 10, "high": (i + 1) / 10, "confidence": i / 10 + 0.05, "accuracy": accuracy, "count": 4 * (i >= 5)}
            for i in range(10)]


def test_an_unchanged_calibration_curve_is_named_not_hidden(figures):
    plots.plot_reliability({"before calibration": reliability_bins(0.7), "temperature 1.00": reliability_bins(0.7)}, "r.png")
    plots.plot_reliability({"before calibration": reliability_bins(0.7), "temperature 1.50": reliability_bins(0.8)}, "r.png")
    same, different = ([line.get_label() for line in fig.axes[0].get_lines()[1:]] for fig in figures)
    assert same == ["before calibration = temperature 1.00"]
    assert different == ["before calibration", "temperature 1.50"]
    first, second = figures[1].axes[0].get_lines()[1:]
    assert first.get_marker() != second.get_marker()


def test_calibration_curves_with_different_bins_filled_are_two_lines(figures):
    after = reliability_bins(0.7)
    after[4]["count"] = 3  # calibration moved some clips into a bin the uncalibrated curve leaves empty
    plots.plot_reliability({"before calibration": reliability_bins(0.7), "temperature 1.20": after}, "r.png")
    assert [line.get_label() for line in figures[0].axes[0].get_lines()[1:]] == ["before calibration", "temperature 1.20"]


@pytest.mark.parametrize("plot", ["confusion", "reliability", "recording"])
def test_a_long_title_fits_the_figure(figures, plot):
    title = "cnn3_ae_sex_PL_from_the_autoencoder: test F1 0.987 on a speaker-disjoint split of 6 speakers"
    if plot == "confusion":
        plots.plot_confusion_matrix([[5, 1], [0, 6]], ["Male", "Female"], "cm.png", title)
    elif plot == "recording":  # predict.py --plot with several models: every member's label, and the fused one
        title = "take_01.wav: " + ", ".join(f"mlp_sex_{i}.pt Female (0.9{i})" for i in range(6))
        plots.plot_recording(np.zeros((MelParams().n_mels, 50), np.uint8), MelParams(), "r.png", title)
    else:
        plots.plot_reliability({"before calibration": reliability_bins(0.7)}, "r.png", title)
    figure = figures[0]
    figure.canvas.draw()
    shown = extent(figure.axes[0].title)
    assert "\n" in figure.axes[0].title.get_text()
    assert shown.width <= figure.bbox.width


def test_console_confusion_matrix_numbers_sit_under_their_headers():
    from toolkit.evaluation.metrics import format_confusion

    header, *rows = format_confusion([[10, 2], [3, 11]], ["Male", "Female"]).splitlines()
    ends = [header.index(c) + len(c) for c in ("Male", "Female")]  # right-aligned: a number ends where its class does
    for row, values in zip(rows, ([10, 2], [3, 11])):
        assert [row.index(str(v), end - len(str(v))) + len(str(v)) for v, end in zip(values, ends)] == ends
        assert len(row) == len(header)


def test_runs_plot_tells_an_mlp_on_ssl_from_one_on_egemaps():
    import pandas as pd

    from summarize_runs import f1_by_category

    table = pd.DataFrame([{"category": "sex", "model": "mlp", "features": "ssl", "pre-training": "none", "run": "ssl/mlp_sex", "weighted F1": 0.9},
                          {"category": "emotion", "model": "mlp", "features": "egemaps", "pre-training": "none", "run": "mine/mlp_emotion", "weighted F1": 0.5},
                          {"category": "sex", "model": "cnn3", "features": "mel", "pre-training": "autoencoder", "run": "cnn3_ae_sex", "weighted F1": 0.95}])
    values = f1_by_category(table)
    assert values == {"sex": {"mlp on ssl": 0.9, "cnn3 on mel + autoencoder": 0.95}, "emotion": {"mlp on egemaps": 0.5}}


def test_reconstructions_that_are_all_alike_are_called_so():
    import torch

    from toolkit.training.autoencoding import alike

    inputs = torch.rand(8, 128, 128)
    assert alike(inputs.mean(0, keepdim=True).expand(8, -1, -1) + 0.01 * torch.rand(8, 128, 128), inputs)
    assert not alike(inputs + 0.05 * torch.rand(8, 128, 128), inputs)
