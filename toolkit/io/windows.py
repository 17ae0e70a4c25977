"""How a recording is cut into the windows a model scores: one policy for stage 3's evaluation of long test clips,
predict.py, evaluate.py, the Python API and the web demo (numpy only: the ONNX backend runs without torch).

A recording no longer than the window is one window; a longer one gets a window every `hop` seconds (default: half a
window) from its start and a last one flush with its end. Its probabilities are the mean over its windows.
"""
from __future__ import annotations

import numpy as np

DEFAULT_HOP = 0.5  # of a window
MIN_HOP = 0.01  # of a window: a finer hop averages windows that are nearly the same image


def window_and_hop(window: float, hop: float | None = None) -> tuple[float, float]:
    """(window s, hop s) a recording is cut with: `hop`, or DEFAULT_HOP of the window; rounded to a microsecond so that
    models looking the same way compare equal (and share one computation per file)."""
    return round(window, 6), round(hop or DEFAULT_HOP * window, 6)


def sample_windows(length: int, window: int, hop: int) -> list[tuple[int, int]]:
    """(start, end) of windows of `window` samples every `hop` covering `length` samples (one window if it fits)."""
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window + 1, max(hop, 1)))
    if starts[-1] != length - window:
        starts.append(length - window)
    return [(s, s + window) for s in starts]


def window_start(length: int, frames: int) -> int:
    """First frame of the centred `frames`-wide window on a clip `length` frames long (negative: the clip is
    shorter and starts later). Evaluation uses it; training draws random placements."""
    return (length - frames) // 2


def window_starts(length: int, frames: int, hop: int) -> list[int]:
    """First frames of the windows that cover a clip `length` frames long: the centred one when the clip fits in
    one window, else one every `hop` frames from the start and a last one flush with the end."""
    if length <= frames:
        return [window_start(length, frames)]
    starts = list(range(0, length - frames + 1, hop))
    return starts if starts[-1] == length - frames else starts + [length - frames]


def image_windows(image: np.ndarray, seconds: float, seconds_per_frame: float, window: float,
                  hop: float) -> list[tuple[float, float, np.ndarray]]:
    """A recording's time-frequency image (`seconds` of audio, one column every `seconds_per_frame`) cut into
    windows of columns, as training cuts its random windows (so the STFT sees each window's surroundings): the whole
    image when it is no longer than one window."""
    frames = max(1, round(window / seconds_per_frame))
    if image.shape[1] <= frames:
        return [(0.0, seconds, image)]
    starts = window_starts(image.shape[1], frames, max(1, round(hop / seconds_per_frame)))
    return [(s * seconds_per_frame, (s + frames) * seconds_per_frame, image[:, s : s + frames]) for s in starts]
