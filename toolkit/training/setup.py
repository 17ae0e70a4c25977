"""One set-up for the training stages (train_cnn.py, cnn_classifier.py, train_wav2vec2.py, train_autoencoder.py,
pseudo_labeling_semisupervised.py): each script's main() adds its own flags to get_args_parser's, and set_up does
the rest they share: parse (a --config RUN_CARD.json first: the card's command line and training config become the
defaults, flags typed override them), the TrainConfig, category, device, output folder (--model_dir), the split CSVs
(--data_dir), the splits, the run card and the run's files, seeding and fitting.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Callable

from toolkit import precision
from toolkit.cli import LEGACY_NAMES, pick_device, seed_everything, split_csv
from toolkit.config import TrainConfig, train_config
from toolkit.errors import ToolkitError
from toolkit.fileio import output_dir
from toolkit.io.labels import check_category
from toolkit.io.splits import training_sets
from toolkit.runcard import AUTOENCODER, RunCard, read_card
from toolkit.training.data import FeatureSet, load_split

if TYPE_CHECKING:
    import torch

    from toolkit.training.engine import RunFiles

SPLITS = ("train", "val", "test")
NOT_FROM_CARD = ("config", "resume")  # a re-run from a card starts afresh unless --resume is typed


def stage_of(card: RunCard) -> str:
    """The script that wrote a run card (its run is re-run by the same script)."""
    if card.model == AUTOENCODER:
        return "train_autoencoder.py"
    if "pseudo-label" in card.init:
        return "pseudo_labeling_semisupervised.py"
    if "autoencoder" in card.init:
        return "cnn_classifier.py"
    return "train_wav2vec2.py" if card.features["type"] == "waveform" else "train_cnn.py"


def card_defaults(card: RunCard, parser: argparse.ArgumentParser, argv: list[str]) -> dict:
    """The parser defaults that make a run the card's: its training config (every TrainConfig field but the two that
    flags derive), its model's own arguments (unless --model names another), its command line, older flag names
    mapped to today's (values JSON cannot give back as typed, a dict, are left to their flags' defaults), and the
    --precision its steps computed in (a GPU run's bf16 is bf16 on a CPU too, where it has native bf16)."""
    dests = {a.dest for a in parser._actions}
    derived = ("recipe", "epochs")  # from --recipe/--model and --epochs (an lbfgs run's epochs are its C values)
    defaults = {f.name: card.training[f.name] for f in fields(TrainConfig) if f.name in card.training and f.name not in derived}
    if not any(a == "--model" or a.startswith("--model=") for a in argv):
        defaults.update(card.model_args)
    for key, value in card.args.items():
        key = LEGACY_NAMES.get(key, key)
        if key in dests and key not in NOT_FROM_CARD and not isinstance(value, dict):
            defaults[key] = value
    if "precision" in dests:
        defaults["precision"] = precision.flag_for(card.precision)
    return defaults


def parse(parser: argparse.ArgumentParser, argv: list[str], script: str) -> argparse.Namespace:
    """The flags, on top of --config's run card when one is given (see card_defaults; the parser's --config is
    toolkit.cli's, as every training stage's)."""
    first = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    first.add_argument("--config", default=None)
    path = first.parse_known_args(argv)[0].config
    if path is None:
        return parser.parse_args(argv)
    card = read_card(path)
    if stage_of(card) != script:
        raise ToolkitError(f"--config {path}: the run card of a {stage_of(card)} run; re-run it with "
                           f"{stage_of(card)} --config {path}")
    defaults = card_defaults(card, parser, argv)
    parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    changed = [f"--{k} {getattr(args, k)}" for k, v in defaults.items() if str(getattr(args, k, v)) != str(v)]
    print(f"re-running {path}" + (f" with {', '.join(changed)}" if changed else " as it was"))
    return args


def recorded(args: argparse.Namespace) -> dict:
    """The command line as the run card keeps it: values JSON holds as they are, others (a --T1 point) as their text,
    so that --config gives each back to its flag."""
    plain = (str, int, float, bool, type(None), list, tuple)
    return {k: v if isinstance(v, plain) else str(v) for k, v in vars(args).items()}


@dataclass
class Stage:
    """A training stage's parsed flags and what they decide, and the steps every stage takes with them."""
    script: str
    args: argparse.Namespace
    config: TrainConfig
    category: str
    device: "torch.device"

    @property
    def model_dir(self) -> str:
        return self.args.model_dir

    def csvs(self, splits: tuple[str, ...] = SPLITS) -> dict[str, str]:
        return {s: split_csv(self.args, s) for s in splits}

    def load(self, csv: str | list[str], desc: str, classes: list[str] | None, **kwargs) -> FeatureSet:
        """One split's clips as this run's config makes them (load_split's from_audio as a keyword)."""
        return load_split(csv, self.category, self.config, normalize=self.config.normalize, desc=desc, classes=classes,
                          features=getattr(self.args, "features", None), **kwargs)

    def splits(self, folds: int = 0, **kwargs) -> tuple:
        """(train, val, test, the card's split) from the split CSVs (with `folds`: all pooled in train, see
        training_sets); `kwargs` go to load."""
        return training_sets(self.csvs(), lambda csv, desc, classes: self.load(csv, desc, classes, **kwargs), folds,
                             self.config.seed, self.category)

    def card(self, model: str, classes: list[str], data, split: dict, **kwargs) -> RunCard:
        """The run card of this run (RunCard.new's init, init_detail and model_args as keywords)."""
        return RunCard.new(model, self.category, classes, data, self.config, split, recorded(self.args),
                           precision=precision.computed(self.device), **kwargs)

    def run_files(self, stem: str, folder: str | None = None) -> RunFiles:
        from toolkit.training.engine import RunFiles  # (the engine imports torch: --help answers without it)

        run = RunFiles(folder or self.model_dir, stem)
        if self.args.config and os.path.abspath(run.card) == os.path.abspath(self.args.config):
            raise ToolkitError(f"--config {self.args.config}: this re-run would overwrite the run it re-runs; pass "
                               f"another --model_dir")
        return run

    def new_model(self, make_model: Callable[[], "torch.nn.Module"]) -> "torch.nn.Module":
        """The network make_model() builds, its initial weights drawn from --seed."""
        seed_everything(self.config.seed)
        return make_model()

    def fit(self, model: "torch.nn.Module", train, val, test, run: RunFiles, card: RunCard, **kwargs) -> RunCard:
        """Train `model` with this run's config, device, --resume and --compile (engine.fit's keywords as kwargs)."""
        from toolkit.training.engine import fit

        return fit(model, train, val, test, self.config, run, card, self.device, resume=self.args.resume,
                   compile=self.args.compile, **kwargs)


def set_up(parser: argparse.ArgumentParser, argv: list[str] | None, script: str, base: TrainConfig | None = None,
           default_recipe: Callable[[argparse.Namespace], str] = lambda args: "default") -> Stage:
    """Parse a training stage's flags and prepare what they name: an unusable --model_dir, an unknown category or
    device fail here, before any data is read. `base`: the stage's fixed recipe; default_recipe(args): the recipe
    when --recipe is not given (the model's own)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(parser, argv, script)
    category = check_category(args.category)
    config = train_config(args, base=base, default_recipe=default_recipe(args))
    device = pick_device(args.device, args.threads)
    output_dir(args.model_dir, typed_name(parser, argv, "model_dir"))
    return Stage(script, args, config, category, device)


def typed_name(parser: argparse.ArgumentParser, argv: list[str], dest: str) -> str:
    """The name the command line gave flag `dest` (an alias, such as the seed's --model_save_path), for messages."""
    names = next(a.option_strings for a in parser._actions if a.dest == dest)
    return next((a.split("=")[0] for a in reversed(argv) if a.split("=")[0] in names), names[0])
