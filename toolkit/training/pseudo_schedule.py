"""The pseudo-label weight's schedule (toolkit/training/pseudo.py): alpha(step), and the points --T1 and --T2 it is
given in. Apart from the training code so that stage 5's --help reads it without importing torch."""
from __future__ import annotations

from dataclasses import dataclass


def alpha_weight(step: int, T1: int, T2: int, af: float) -> float:
    """Weight of the pseudo-label loss: 0 before T1, af * (step - T1) / (T2 - T1) from T1 to T2, af after T2
    (T2 == T1, a run too short for a ramp: af from T1 on)."""
    if step < T1:
        return 0.0
    if step >= T2:
        return af
    return af * (step - T1) / (T2 - T1)


@dataclass(frozen=True)
class SchedulePoint:
    """A point of the alpha ramp: `value` steps, epochs or a share of the run, turned into a step by `steps`."""

    value: float
    unit: str  # "steps", "epochs" or "run"

    def steps(self, total: int, per_epoch: int) -> int:
        if self.unit == "steps":
            return int(self.value)
        return round(self.value * (per_epoch if self.unit == "epochs" else total))

    def __str__(self) -> str:
        return {"steps": f"{self.value:g}", "epochs": f"{self.value:g}ep", "run": f"{100 * self.value:g}%"}[self.unit]


def schedule_point(text: str) -> SchedulePoint:
    """'100' (steps), '3ep' (epochs) or '50%' (of the run); an argparse type."""
    import argparse

    text = str(text).strip()
    try:
        if text.endswith("%"):
            point = SchedulePoint(float(text[:-1]) / 100, "run")
        elif text.endswith(("ep", "epochs")):
            point = SchedulePoint(float(text.removesuffix("epochs").removesuffix("ep")), "epochs")
        else:
            point = SchedulePoint(int(text), "steps")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write steps (100), epochs (3ep) or a share of the run (50%)")
    if point.value < 0 or (point.unit == "run" and point.value > 1):
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 0 (a share at most 100%)")
    return point
