"""The training configuration: one typed record of everything that decides how a network is trained.

Flags are parsed once into a TrainConfig; a recipe is a TrainConfig instance, and a recipe flag left off the command
line takes its recipe's value (`--recipe seed --time_masks 2` changes one thing). The run card records the config,
and --resume refuses a changed one. Each default is defined here, once.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class TrainConfig:
    recipe: str = "default"
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 42
    time_axis: str = "pad"  # mel: 'resize' stretches a clip to the window, 'pad' keeps its time scale
    frames: int = 128  # 'pad': window width in frames (128 hops of 512 samples at 16 kHz = 4.1 s)
    weight_decay: float = 1e-2
    lr_schedule: str = "cosine"
    patience: int = 10
    select_by: str = "f1_loss"  # F1, loss breaking ties: robust on small validation splits (experiments/RESULTS.md)
    class_weights: str = "balanced"
    time_masks: int = 2
    time_width: int = 12
    freq_masks: int = 2
    freq_width: int = 12
    gain_db: float = 6.0
    mixup: float = 0.0
    normalize: str = "none"  # 'speaker': each speaker's own mean and spread removed (within-speaker traits)
    eval_windows: str = "all"  # mel 'pad': a clip longer than the window is scored on all its windows ('center': one)
    calibration: str = "temperature"  # probabilities calibrated on the validation split after training
    warmup: float = 0.2  # lr_schedule onecycle / linear: the fraction of the epochs that warm the learning rate up
    accumulate: int = 1  # batches whose gradients are summed before each optimiser step
    max_seconds: float = 5.0  # audio (fine-tuned encoders): longer clips are cropped at random in training
    freeze_feature_encoder: bool = False  # fine-tuned encoders: keep the CNN front end (raw audio -> frames) fixed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def changed(self, other: "TrainConfig", ignore: tuple[str, ...] = ("epochs",)) -> dict[str, tuple]:
        """{field: (self's value, other's)} where the two differ (for --resume)."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
                if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)}


# The measured default (experiments/RESULTS.md) and the seed project's training.
RECIPES: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    "seed": TrainConfig(recipe="seed", time_axis="resize", weight_decay=0.0, lr_schedule="none", patience=0,
                        select_by="f1", class_weights="none", time_masks=0, freq_masks=0, gain_db=0.0, calibration="none"),
}
# train_wav2vec2.py's fixed recipe: the seed project's Transformer/training_wav2vec2.py (Hugging Face Trainer: batch 4,
# 4 accumulated batches, learning rate 3e-5 warmed up over 10% then decayed linearly, 20 epochs, no weight decay,
# best checkpoint on validation; the Trainer's per-step warm-up is per epoch here, as every schedule of the engine).
FINETUNE = TrainConfig(recipe="wav2vec2", epochs=20, batch_size=4, learning_rate=3e-5, weight_decay=0.0,
                       lr_schedule="linear", warmup=0.1, accumulate=4, patience=0, select_by="f1", class_weights="none",
                       time_masks=0, freq_masks=0, gain_db=0.0)
TIME_AXES = ("resize", "pad")
LR_SCHEDULES = ("none", "cosine", "onecycle", "linear")
SELECT_BY = ("f1", "loss", "f1_loss")
CLASS_WEIGHTS = ("none", "balanced")
NORMALIZE = ("none", "speaker")
EVAL_WINDOWS = ("all", "center")
CALIBRATIONS = ("temperature", "none")


def at_least(minimum: float, kind: type = int):
    """An argparse type: a number of `kind` no smaller than `minimum`."""
    def parse(text: str):
        value = kind(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


def non_negative(kind: type):
    return at_least(0, kind)


positive_int = at_least(1, int)
seed_value = at_least(0, int)  # numpy takes seeds 0 .. 2**32 - 1


def fraction(text: str) -> float:
    """A share strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number above 0 (a learning rate): nan, inf and negatives would train into garbage."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


# flag -> (argparse keywords, help). The defaults come from the recipes above, never from here.
RECIPE_FLAGS: dict[str, tuple[dict, str]] = {
    "time_axis": (dict(choices=TIME_AXES), "mel: 'resize' stretches each clip to 128 frames (tempo lost); 'pad' keeps "
                                           "the time scale and pads/crops to --frames (random window in training)"),
    "frames": (dict(type=positive_int), "time_axis pad: window width in frames (128 = 4.1 s)"),
    "weight_decay": (dict(type=non_negative(float)), "AdamW weight decay"),
    "lr_schedule": (dict(choices=LR_SCHEDULES), "learning rate over the epochs: constant, cosine decay to 0, "
                                                "one-cycle (warm-up then cosine decay) or linear (warm-up then linear "
                                                "decay, the Hugging Face Trainer's)"),
    "warmup": (dict(type=non_negative(float)), "onecycle / linear: fraction of the epochs that warm the learning rate "
                                               "up (at least one epoch)"),
    "patience": (dict(type=non_negative(int)), "stop after this many epochs without a better validation score (0 = never)"),
    "select_by": (dict(choices=SELECT_BY), "best epoch by validation weighted F1, validation loss, or F1 with the loss breaking ties (ties: the later epoch)"),
    "class_weights": (dict(choices=CLASS_WEIGHTS), "'balanced': weight the loss by inverse class frequency (imbalanced age/race)"),
    "time_masks": (dict(type=non_negative(int)), "mel: SpecAugment time masks per clip"),
    "time_width": (dict(type=non_negative(int)), "mel: widest time mask (frames)"),
    "freq_masks": (dict(type=non_negative(int)), "mel: SpecAugment frequency masks per clip"),
    "freq_width": (dict(type=non_negative(int)), "mel: widest frequency mask (image rows)"),
    "gain_db": (dict(type=non_negative(float)), "mel: random gain of up to ± this many dB"),
    "mixup": (dict(type=non_negative(float)), "mixup Beta(a, a) parameter a (0 = off)"),
    "normalize": (dict(choices=NORMALIZE), "'speaker': remove each speaker's own mean and spread (per value; per mel "
                                           "band), computed from the speaker's clips with no labels; for traits that "
                                           "vary within a speaker (emotion). It removes the signal of traits constant "
                                           "per speaker (sex, age, race)"),
    "eval_windows": (dict(choices=EVAL_WINDOWS), "mel with time_axis pad: score a clip longer than the window on all its "
                                                 "windows (hop half a window; mean probability), as predict.py scores a "
                                                 "recording, or on the centred one only"),
    "calibration": (dict(choices=CALIBRATIONS), "after training, fit a temperature on the validation split so that the "
                                                "probabilities mean what they say (kept in the run card; predictions "
                                                "unchanged)"),
}


def _default_text(name: str, base: TrainConfig | None) -> str:
    if base is not None:
        return f"default: {getattr(base, name)}"
    default, seed = getattr(RECIPES["default"], name), getattr(RECIPES["seed"], name)
    return f"default: {default}" + (f"; --recipe seed: {seed}" if seed != default else "")


def add_training_flags(p: argparse.ArgumentParser, epochs: int, base: TrainConfig = TrainConfig()) -> None:
    """The seed's training flags (epochs, batch size, learning rate, seed) and --resume / --compile; the batch size,
    learning rate and seed default to `base`'s (a stage's fixed recipe)."""
    p.add_argument("--epochs", type=positive_int, default=epochs, help="training epochs")
    p.add_argument("--batch_size", type=positive_int, default=base.batch_size, help="clips per batch")
    p.add_argument("--learning_rate", type=positive_float, default=base.learning_rate, help="optimiser learning rate")
    p.add_argument("--seed", type=seed_value, default=base.seed, help="random seed: same seed, same run (on CPU)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last saved epoch")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network: faster steps on a GPU after a warm-up of a minute or so "
                        "(needs a C++ compiler; rarely worth it on a CPU)")


def add_recipe_flags(p: argparse.ArgumentParser, names: tuple[str, ...] | None = None,
                     base: TrainConfig | None = None) -> None:
    """The recipe flags. With `base` (a stage with one fixed recipe) only `names` are offered, defaulting to base's;
    without, --recipe chooses the recipe and every flag is offered. Unset flags stay unset (SUPPRESS), so that
    train_config can tell them from a value the user typed."""
    g = p.add_argument_group("training recipe" + ("" if base else " (unset flags take the value of --recipe)"))
    if base is None:
        g.add_argument("--recipe", choices=list(RECIPES), default="default",
                       help="'default': the measured recipe (experiments/RESULTS.md); 'seed': the seed project's "
                            "(stretched images, no augmentation, constant learning rate, best epoch by F1)")
    offered = names or tuple(RECIPE_FLAGS)
    for name in offered:
        kwargs, text = RECIPE_FLAGS[name]
        if "frames" not in offered and base is not None:  # a flag the stage lacks is named by its fixed value
            text = text.replace("--frames", f"{base.frames} frames")
        g.add_argument(f"--{name}", default=argparse.SUPPRESS, help=f"{text} ({_default_text(name, base)})", **kwargs)


def train_config(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """The TrainConfig of parsed flags: the chosen recipe (or `base`), with every flag the user gave on top."""
    start = base if base is not None else RECIPES[args.recipe]
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "recipe" and hasattr(args, f.name)}
    return replace(start, **given)
