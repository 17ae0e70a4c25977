"""The numeric precision networks run at: bf16 autocast on CUDA always, and on a CPU only when asked and supported.

`--precision auto` (the default) keeps every CPU computation in float32, bit-identical to runs without the flag.
`--precision bf16` also runs the CPU's forward passes (training and prediction) under bf16 autocast, where oneDNN
has native bf16 kernels (AVX-512 BF16 / AMX: torch.ops.mkldnn._is_mkldnn_bf16_supported()); on any other CPU it
silently stays float32, since emulated bf16 is slower than float32 there. Results under bf16 differ from float32
within bf16's ~3 significant digits (tests/test_precision.py states the tolerance); losses, gradients' master
weights and the optimiser stay float32.
"""
from __future__ import annotations

from contextlib import nullcontext

PRECISIONS = ("auto", "bf16")
COMPUTED = ("float32", "bf16")  # what a run's steps computed in: the run card's `precision`
_cpu_bf16 = False  # the process's choice, set when a script's --precision is parsed


def cpu_bf16_supported() -> bool:
    """Whether this CPU has native bf16 matrix kernels for oneDNN (else bf16 autocast would only be emulated)."""
    import torch  # here, not at the top: parsing --precision auto must not import torch (predict.py --backend onnx)

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without the op
        return False


def precision_value(text: str) -> str:
    """An argparse type for --precision that also sets the process's choice (argparse applies it to the default
    too, so every parse, e.g. of an in-process run after another, starts from 'auto')."""
    import argparse

    if text not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"{text!r}: choose {' or '.join(PRECISIONS)}")
    use(text)
    return text


def use(precision: str, supported: bool | None = None) -> bool:
    """Set the CPU's precision ('auto': float32; 'bf16': bf16 autocast if `supported`, by default if the CPU has
    native bf16); returns whether the CPU now runs bf16."""
    global _cpu_bf16
    _cpu_bf16 = precision == "bf16" and (cpu_bf16_supported() if supported is None else supported)
    return _cpu_bf16


def computed(device) -> str:
    """What a network's steps on `device` (a torch.device) compute in now: 'bf16' (autocast: CUDA, or a CPU under
    --precision bf16 with native bf16) or 'float32'. The run card and a run's _last.pt record it."""
    return "bf16" if device.type == "cuda" or _cpu_bf16 else "float32"


def flag_for(recorded: str) -> str:
    """The --precision that runs the way a run card's `precision` says ('float32': auto, i.e. float32 on a CPU)."""
    return "bf16" if recorded == "bf16" else "auto"


def autocast(device):
    """The autocast context of a forward pass on `device` (a torch.device)."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if _cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()
