"""What every stage script shares on the command line: flags, one-line errors, seeding, device choice."""
from __future__ import annotations

import argparse
import os
import random
import sys
from typing import Callable

import numpy as np

from .errors import ToolkitError
from .labels import CATEGORIES


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (usage is in --help) and exit status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def get_args_parser(description: str, epochs: int | None = None, splits: tuple[str, ...] = ("train", "val", "test")) -> Parser:
    """The flags shared by the training stages (the seed's names and defaults)."""
    p = Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--csv_load_path", default="Data/", help="folder holding the split CSVs")
    p.add_argument("--category", default="sex", help=f"what to classify: {', '.join(CATEGORIES)}")
    for split in splits:
        p.add_argument(f"--{split}_csv", default=None, help=f"{split} CSV in --csv_load_path (default {{category}}_{split}.csv)")
    if epochs is not None:
        p.add_argument("--epochs", type=positive_int, default=epochs, help="training epochs")
        p.add_argument("--batch_size", type=positive_int, default=64, help="images per batch")
        p.add_argument("--learning_rate", type=float, default=1e-3, help="optimiser learning rate")
        p.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay")
        p.add_argument("--seed", type=int, default=42, help="random seed: same seed, same run (on CPU)")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last saved epoch")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all cores)")
    return p


def split_csv(args: argparse.Namespace, split: str) -> str:
    """Path of a split's CSV: --{split}_csv (a bare name is looked up in --csv_load_path)."""
    name = getattr(args, f"{split}_csv") or f"{args.category}_{split}.csv"
    return name if os.path.dirname(name) else os.path.join(args.csv_load_path, name)


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


def run_main(main: Callable[[], None]) -> None:
    """Run a stage: a ToolkitError becomes `error: ...` on one line and exit status 2, never a traceback."""
    try:
        main()
    except ToolkitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; re-run (with --resume for training) to continue", file=sys.stderr)
        sys.exit(130)
