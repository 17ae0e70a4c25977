"""What every stage script shares on the command line: flags, one-line errors, seeding, device choice."""
from __future__ import annotations

import argparse
import difflib
import errno
import os
import random
import re
import signal
import sys
from typing import Callable

import numpy as np

from toolkit.config import TrainConfig, add_recipe_flags, add_training_flags, number, positive_int
from toolkit.errors import ToolkitError
from toolkit.interrupts import INTERRUPTED, raise_on_ctrl_c, was_interrupted
from toolkit.io.labels import CATEGORIES
from toolkit.precision import precision_value


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help keeps the docstring's layout and shows a flag's default only where it is a real value (not the None
    of 'derived from other flags', nor the True/False of an on/off switch: their help says what happens)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is argparse.SUPPRESS or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (usage is in --help), exit status 2, and HelpFormatter."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)  # `--epoch 3` is a typo to point out, not a prefix to guess from
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}{self.suggestion(message)} (see --help)\n")

    def suggestion(self, message: str) -> str:
        """'; did you mean --model_save_path?' for a mistyped flag (argparse's own message names only the typo)."""
        if not message.startswith("unrecognized arguments:"):
            return ""
        known = [o[2:] for o in self._option_string_actions if o.startswith("--") and o != "--help"]
        guesses = [closest_flag(word.split("=")[0].lstrip("-"), known)
                   for word in message.split(":", 1)[1].split() if word.startswith("-")]
        return "; did you mean " + ", ".join("--" + g for g in guesses if g) + "?" if any(guesses) else ""


def closest_flag(typed: str, known: list[str]) -> str | None:
    """The flag a typo meant: one whose initials it is (--lr: learning_rate), one it begins (--epoch: epochs), else
    the closest spelling (--modle_dir: model_dir)."""
    started = sorted((k for k in known if k.startswith(typed)), key=len)
    initials = [k for k in known if "_" in k and "".join(part[:1] for part in k.split("_")) == typed]
    spelled = difflib.get_close_matches(typed, known, n=1, cutoff=0.6)
    return next(iter(initials[:1] or started[:1] or spelled), None)


# The folder flags' names in the seed's scripts (and this toolkit's earlier versions): aliases of today's two, and
# the keys of older run cards' command lines (--config reads them).
LEGACY_NAMES = {"csv_load_path": "data_dir", "model_save_path": "model_dir", "model_save_and_load_path": "model_dir",
                "model_load_and_save_path": "model_dir"}


def add_model_dir_flag(p: argparse.ArgumentParser, help: str, aliases: tuple[str, ...] = ("model_save_path",)) -> None:
    """--model_dir, the folder a stage writes its run to (and reads its starting model from), with the seed's names
    for it in that stage as aliases."""
    p.add_argument("--model_dir", *(f"--{a}" for a in aliases), dest="model_dir", default="Models/",
                   help=f"{help} ({', '.join('--' + a for a in aliases)}: the seed's name{'s' if len(aliases) > 1 else ''})")


def get_args_parser(description: str, epochs: int | None = None, splits: tuple[str, ...] = ("train", "val", "test"),
                    recipe: bool = True, base: TrainConfig | None = None) -> Parser:
    """The flags shared by the training stages (the seed's names and defaults).

    epochs: the stage's default number of epochs (None: a stage that does not train). recipe=False leaves out the
    recipe flags, for a stage with a fixed recipe (it adds the few flags it honours with add_recipe_flags' names);
    `base` is that recipe (a TrainConfig), whose batch size and learning rate become the flags' defaults.
    """
    p = Parser(description=description)
    p.add_argument("--data_dir", "--csv_load_path", dest="data_dir", default="Data/",
                   help="folder holding the split CSVs (--csv_load_path: the seed's name)")
    p.add_argument("--category", default="sex", help=f"the label column to classify: {', '.join(CATEGORIES)} "
                                                     f"(CREMA-D), or your own (stage 1's --label_column)")
    for split in splits:
        p.add_argument(f"--{split}_csv", default=None, help=f"{split} CSV in --data_dir (default {{category}}_{split}.csv)")
    if epochs is not None:
        add_training_flags(p, epochs, base or TrainConfig())
        if recipe:
            add_recipe_flags(p)
        add_config_flag(p)
    add_device_flags(p)
    return p


def add_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="RUN_CARD.json", default=None,
                   help="re-run a run exactly from its run card (the .json beside its .pt): the card's flags, its whole "
                        "training config and the model's own arguments become the defaults; flags typed here override "
                        "them (e.g. --seed 2 or --model_dir elsewhere); the card's own run is never overwritten")


def add_features_flag(p: argparse.ArgumentParser) -> None:
    """--features: which of the feature types of a split to train on (stage 2 adds a second type to a folder's split
    as {category}_{split}.{type}.csv tables, joined on clip id)."""
    from toolkit.features import STORED

    p.add_argument("--features", choices=STORED, default=None,
                   help="the feature type to train on: the split CSVs' own (default), or another that stage 2 added to "
                        "the split's folder ({category}_{split}.{features}.csv beside the CSVs, joined on clip id)")


def add_device_flags(p: argparse.ArgumentParser) -> None:
    """--device and --threads, for every script that runs a network."""
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'")
    p.add_argument("--threads", type=number(int, 1, 1024), default=None, help="CPU threads for PyTorch (default: all cores)")
    p.add_argument("--precision", type=precision_value, default="auto", metavar="{auto,bf16}",
                   help="'auto': bf16 autocast on CUDA, float32 on the CPU (bit-identical to earlier runs); 'bf16': "
                        "bf16 autocast on the CPU too, where it has native bf16 (AVX-512 BF16/AMX; elsewhere float32)")


def fold_count(text: str) -> int:
    """An argparse type for --folds: 0 (one train/val/test run) or K >= 2 speaker-grouped folds."""
    value = number(int, 0, 1000)(text)
    if value == 1:
        raise argparse.ArgumentTypeError(f"use 0 (one train/val/test run) or at least 2 folds, got {value}")
    return value


def split_csv(args: argparse.Namespace, split: str) -> str:
    """Path of a split's CSV: --{split}_csv (a bare name is looked up in --data_dir; an older run card's command line
    calls it csv_load_path)."""
    folder = args.data_dir if hasattr(args, "data_dir") else args.csv_load_path
    return in_folder(getattr(args, f"{split}_csv") or f"{args.category}_{split}.csv", folder)


def in_folder(name: str, folder: str) -> str:
    """A file flag's path: a relative one is looked up in `folder` first (`--model_file ssl/mlp_sex.pt` is in
    --model_dir's ssl/), else one with a directory part is taken from the working folder; an absolute one as is."""
    inside = os.path.join(folder, name)
    return inside if not os.path.dirname(name) or (not os.path.isabs(name) and os.path.exists(inside)) else name


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
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ToolkitError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N")
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
    if e.errno == errno.ENOSPC:
        return f"{path}: {e.strerror}; free disk space or pass a writable output folder"
    return f"{path}: {e.strerror}; check that the folder exists and is writable, or pass another folder"


def run_main(main: Callable[[], None]) -> None:
    """Run a stage: a ToolkitError becomes `error: ...` on one line and exit status 2, never a traceback."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    raise_on_ctrl_c()
    signal.signal(signal.SIGTERM, _terminate_like_ctrl_c)
    try:
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
            print(INTERRUPTED, file=sys.stderr)
            sys.exit(130)
        if was_interrupted():  # a library caught the KeyboardInterrupt and carried on: the stage did not finish as asked
            print(INTERRUPTED, file=sys.stderr)
            sys.exit(130)
    finally:
        # the stage has ended and said so: a SIGTERM from now on (torchrun stopping the other ranks while Python shuts
        # down) ends the process as SIGTERM does, not as a KeyboardInterrupt traceback from an exit handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def answer_help(build_parser: Callable[[], argparse.ArgumentParser]) -> None:
    """Print --help and exit before a script's slow imports (torch takes seconds): a script calls it between the
    light imports its parser needs and the heavy ones."""
    if {"-h", "--help"} & set(sys.argv[1:]):
        build_parser().parse_args()
