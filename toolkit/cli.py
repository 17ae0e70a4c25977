"""What every stage script shares on the command line: flags, one-line errors, seeding, device choice."""
from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from typing import Callable

import numpy as np

from .errors import ToolkitError
from .labels import CATEGORIES


# Training recipes (see experiments/RESULTS.md for the measurements behind 'default'). A recipe flag left off
# the command line takes its recipe's value, so `--recipe seed --time_masks 2` changes just one thing.
RECIPES: dict[str, dict] = {
    "seed": dict(time_axis="resize", weight_decay=0.0, lr_schedule="none", patience=0, select_by="f1",
                 class_weights="none", time_masks=0, freq_masks=0, gain_db=0.0, mixup=0.0),
    "default": dict(time_axis="pad", weight_decay=1e-2, lr_schedule="cosine", patience=10, select_by="loss",
                    class_weights="balanced", time_masks=2, freq_masks=2, gain_db=6.0, mixup=0.0),
}


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (usage is in --help) and exit status 2; fills unset flags from --recipe."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, rest = super().parse_known_args(args, namespace)
        for key, value in RECIPES.get(getattr(namespace, "recipe", None), {}).items():
            if getattr(namespace, key, value) is None:
                setattr(namespace, key, value)
        return namespace, rest


def non_negative(kind: type):
    def parse(text: str):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
        return value
    return parse


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def get_args_parser(description: str, epochs: int | None = None, splits: tuple[str, ...] = ("train", "val", "test"),
                    recipe: bool = True) -> Parser:
    """The flags shared by the training stages (the seed's names and defaults).

    recipe=False leaves out the classifier's recipe flags, for a stage that would ignore most of them (the
    autoencoder adds the few it honours itself).
    """
    p = Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--csv_load_path", default="Data/", help="folder holding the split CSVs")
    p.add_argument("--category", default="sex", help=f"what to classify: {', '.join(CATEGORIES)}")
    for split in splits:
        p.add_argument(f"--{split}_csv", default=None, help=f"{split} CSV in --csv_load_path (default {{category}}_{split}.csv)")
    if epochs is not None:
        p.add_argument("--epochs", type=positive_int, default=epochs, help="training epochs")
        p.add_argument("--batch_size", type=positive_int, default=64, help="images per batch")
        p.add_argument("--learning_rate", type=float, default=1e-3, help="optimiser learning rate")
        p.add_argument("--seed", type=int, default=42, help="random seed: same seed, same run (on CPU)")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last saved epoch")
        p.add_argument("--compile", action="store_true",
                       help="torch.compile the network: faster steps on a GPU after a warm-up of a minute or so "
                            "(needs a C++ compiler; rarely worth it on a CPU)")
        if recipe:
            add_recipe_flags(p)
    add_device_flags(p)
    return p


def add_recipe_flags(p: argparse.ArgumentParser) -> None:
    """The training recipe: how images enter the network, augmentation, regularisation, schedule, model choice."""
    g = p.add_argument_group("training recipe (unset flags take the value of --recipe)")
    g.add_argument("--recipe", choices=list(RECIPES), default="default",
                   help="'seed': the seed project's recipe (stretched images, no augmentation, constant LR); "
                        "'default': the measured better one " + str(RECIPES["default"]))
    g.add_argument("--time_axis", choices=["resize", "pad"], default=None,
                   help="'resize': stretch each clip to 128 frames (seed; tempo lost); 'pad': keep the time scale, "
                        "pad/crop to --frames (random window in training, centred for evaluation)")
    g.add_argument("--frames", type=positive_int, default=128, help="time_axis pad: window width in frames (128 = 4.1 s)")
    g.add_argument("--weight_decay", type=non_negative(float), default=None, help="AdamW weight decay")
    g.add_argument("--lr_schedule", choices=["none", "cosine", "onecycle"], default=None,
                   help="learning rate over the epochs: constant, cosine decay to 0, or one-cycle (warm-up then decay)")
    g.add_argument("--patience", type=non_negative(int), default=None,
                   help="stop after this many epochs without a better validation score (0 = never)")
    g.add_argument("--select_by", choices=["f1", "loss"], default=None,
                   help="best epoch by validation weighted F1 or validation loss (ties: the later epoch)")
    g.add_argument("--class_weights", choices=["none", "balanced"], default=None,
                   help="'balanced': weight the loss by inverse class frequency (for imbalanced age/race)")
    g.add_argument("--time_masks", type=non_negative(int), default=None, help="SpecAugment time masks per clip")
    g.add_argument("--time_width", type=non_negative(int), default=12, help="widest time mask (frames)")
    g.add_argument("--freq_masks", type=non_negative(int), default=None, help="SpecAugment frequency masks per clip")
    g.add_argument("--freq_width", type=non_negative(int), default=12, help="widest frequency mask (image rows)")
    g.add_argument("--gain_db", type=non_negative(float), default=None, help="random gain of up to ± this many dB")
    g.add_argument("--mixup", type=non_negative(float), default=None, help="mixup Beta(a, a) parameter a (0 = off)")


def recipe_of(args: argparse.Namespace) -> dict:
    """The recipe values a run used, for its JSON sidecar."""
    keys = [*RECIPES["default"], "recipe", "frames", "time_width", "freq_width"]
    return {k: getattr(args, k) for k in keys if hasattr(args, k)}


def add_device_flags(p: argparse.ArgumentParser) -> None:
    """--device and --threads, for every script that runs a network."""
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all cores)")


def split_csv(args: argparse.Namespace, split: str) -> str:
    """Path of a split's CSV: --{split}_csv (a bare name is looked up in --csv_load_path)."""
    return in_folder(getattr(args, f"{split}_csv") or f"{args.category}_{split}.csv", args.csv_load_path)


def in_folder(name: str, folder: str) -> str:
    """A file flag's path: a bare file name is looked up in `folder`, anything with a directory part is taken as is."""
    return name if os.path.dirname(name) else os.path.join(folder, name)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str = "auto", threads: int | None = None):
    import torch

    if threads:
        torch.set_num_threads(threads)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ToolkitError(f"--device {name}: no CUDA GPU is visible to PyTorch; use --device cpu")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(name)


def _terminate_like_ctrl_c(signum: int, frame) -> None:
    """SIGTERM (kill, timeout, a job scheduler) stops a stage the way Ctrl-C does: `finally` blocks run, temporary
    files are removed and worker pools are shut down instead of being left orphaned."""
    if os.getpid() != _MAIN_PID:  # a forked worker inherited this handler: just die as SIGTERM means
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise KeyboardInterrupt


_MAIN_PID = os.getpid()


def os_error_message(e: OSError) -> str:
    """A file-system failure (unwritable or missing folder, full disk) as one line naming the path."""
    path = e.filename or "output"
    if isinstance(e, FileNotFoundError):
        return f"{path}: {e.strerror}; check the path"
    return f"{path}: {e.strerror}; check that the folder exists and is writable, or pass another folder"


def run_main(main: Callable[[], None]) -> None:
    """Run a stage: a ToolkitError becomes `error: ...` on one line and exit status 2, never a traceback."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGTERM, _terminate_like_ctrl_c)
    try:
        main()
    except ToolkitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # output piped into `head` and closed early: not an error, as for any Unix tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error while Python flushes
        sys.exit(0)
    except OSError as e:  # raised by the OS, not by our code: a path the user gave cannot be used
        print(f"error: {os_error_message(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; re-run (with --resume for training) to continue", file=sys.stderr)
        sys.exit(130)
