"""The training configuration: one typed record of everything that decides how a network is trained.

Flags are parsed once into a TrainConfig; a recipe is a TrainConfig instance, and a recipe flag left off the command
line takes its recipe's value (`--recipe seed --time_masks 2` changes one thing). The run card records the config,
and --resume refuses a changed one. Each default is defined here, once.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, fields, replace

from toolkit.augmentation.wave_augment import spec_flag, spec_help


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
    augment: str = "none"  # on-the-fly waveform augmentation (toolkit.augmentation.wave_augment spec, e.g. 'speed:0.5,noise:0.3')
    normalize: str = "none"  # 'speaker': each speaker's own mean and spread removed (within-speaker traits)
    eval_windows: str = "all"  # mel 'pad': a clip longer than the window is scored on all its windows ('center': one)
    calibration: str = "temperature"  # probabilities calibrated on the validation split after training
    warmup: float = 0.2  # lr_schedule onecycle / linear: the fraction of the epochs (or steps) that warm the learning rate up
    schedule_unit: str = "epoch"  # the schedule follows the epochs or the optimiser steps (toolkit/training/engine.py Schedule)
    accumulate: int = 1  # batches whose gradients are summed before each optimiser step
    max_seconds: float = 5.0  # audio (fine-tuned encoders): longer clips are cropped at random in training
    freeze_feature_encoder: bool = False  # fine-tuned encoders: keep the CNN front end (raw audio -> frames) fixed
    optimizer: str = "adamw"  # 'lbfgs': full-batch L-BFGS for the vector heads (toolkit/training/fullbatch.py)
    C: tuple[float, ...] = (1.0,)  # lbfgs: inverse L2 strengths (scikit-learn's C) to try, one an epoch; validation chooses

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{f.name: tuple(d[f.name]) if isinstance(d[f.name], list) else d[f.name]  # JSON has no tuples
                      for f in fields(cls) if f.name in d})

    def changed(self, other: "TrainConfig", ignore: tuple[str, ...] = ("epochs",)) -> dict[str, tuple]:
        """{field: (self's value, other's)} where the two differ (for --resume)."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
                if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)}


# The measured default (experiments/RESULTS.md) and the seed project's training.
RECIPES: dict[str, TrainConfig] = {
    "default": TrainConfig(),
    "seed": TrainConfig(recipe="seed", time_axis="resize", weight_decay=0.0, lr_schedule="none", patience=0,
                        select_by="f1", class_weights="none", time_masks=0, freq_masks=0, gain_db=0.0, calibration="none"),
    # The vector heads' (linear, mlp): full-batch L-BFGS, C chosen on validation (experiments/RESULTS.md, "Vector heads").
    # C: one value a decade, as scikit-learn's LogisticRegressionCV.
    "vector": TrainConfig(recipe="vector", optimizer="lbfgs", weight_decay=0.0, lr_schedule="none", select_by="loss",
                          C=tuple(10.0 ** k for k in range(-4, 5))),
    # frame_mlp's: the default without SpecAugment's masks, which cost it 1.3-1.6 points on voices never heard
    # (experiments/RESULTS.md, "Voices never heard, round 6").
    "frame_mlp": TrainConfig(recipe="frame_mlp", time_masks=0, freq_masks=0),
}
# train_wav2vec2.py's fixed recipe: the seed project's Transformer/training_wav2vec2.py (Hugging Face Trainer: batch 4,
# 4 accumulated batches, learning rate 3e-5 warmed up over 10% then decayed linearly, 20 epochs, no weight decay,
# best checkpoint on validation; warm-up and decay per optimiser step, as the Trainer's).
FINETUNE = TrainConfig(recipe="wav2vec2", epochs=20, batch_size=4, learning_rate=3e-5, weight_decay=0.0,
                       lr_schedule="linear", warmup=0.1, schedule_unit="step", accumulate=4, patience=0, select_by="f1", class_weights="none",
                       time_masks=0, freq_masks=0, gain_db=0.0)
TIME_AXES = ("resize", "pad")
LR_SCHEDULES = ("none", "cosine", "onecycle", "linear")
SCHEDULE_UNITS = ("epoch", "step")
SELECT_BY = ("f1", "loss", "f1_loss")
CLASS_WEIGHTS = ("none", "balanced")
NORMALIZE = ("none", "speaker")
EVAL_WINDOWS = ("all", "center")
CALIBRATIONS = ("temperature", "none")
OPTIMIZERS = ("adamw", "lbfgs")


def number(kind: type = float, low: float | None = None, high: float | None = None, above: bool = False,
           below: bool = False):
    """The argparse type of every numeric flag: a finite number of `kind` (int: a whole number) from `low` (or above
    it, with `above`) to `high` (or below it, with `below`). NaN, inf and out-of-range values are refused when the flags are parsed, in one line
    naming the flag, before any data is read: each would otherwise run into garbage or a traceback later."""
    def show(v: float) -> str:
        return str(int(v)) if float(v).is_integer() else f"{v:g}"

    words = {int: "a whole number", float: "a finite number"}[kind]
    if low is not None and high is not None and not (above or below):
        wanted = f"{words} from {show(low)} to {show(high)}"
    else:
        bounds = [f"{'above' if above else 'at least'} {show(low)}" if low is not None else "",
                  f"{'below' if below else 'at most'} {show(high)}" if high is not None else ""]
        wanted = f"{words} {' and '.join(b for b in bounds if b)}".strip()

    def parse(text: str):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        if kind is float and not math.isfinite(value) or low is not None and (value <= low if above else value < low) \
                or high is not None and (value >= high if below else value > high):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def at_least(minimum: float, kind: type = int, high: float | None = None):
    """An argparse type: a finite number of `kind` no smaller than `minimum` (and no larger than `high`)."""
    return number(kind, minimum, high)


def non_negative(kind: type, high: float | None = None):
    return number(kind, 0, high)


positive_int = number(int, 1)
seed_value = number(int, 0, 2**32 - 1)  # numpy takes seeds 0 .. 2**32 - 1
fraction = number(float, 0, 1, above=True, below=True)  # a share strictly between 0 and 1
positive_float = number(float, 0, above=True)  # a learning rate: nan, inf and negatives would train into garbage
share = number(float, 0, 1)  # a share from 0 to 1 (a warm-up, a confidence threshold)


# flag -> (argparse keywords, help). The defaults come from the recipes above, never from here.
RECIPE_FLAGS: dict[str, tuple[dict, str]] = {
    "time_axis": (dict(choices=TIME_AXES), "mel: 'resize' stretches each clip to 128 frames (tempo lost); 'pad' keeps "
                                           "the time scale and pads/crops to --frames (random window in training)"),
    "frames": (dict(type=number(int, 8, 4096)), "time_axis pad: window width in frames (128 = 4.1 s)"),
    "weight_decay": (dict(type=non_negative(float, 10)), "AdamW weight decay"),
    "lr_schedule": (dict(choices=LR_SCHEDULES), "learning rate over the epochs: constant, cosine decay to 0, "
                                                "one-cycle (warm-up then cosine decay) or linear (warm-up then linear "
                                                "decay, the Hugging Face Trainer's)"),
    "warmup": (dict(type=share), "onecycle / linear: fraction of the epochs that warm the learning rate "
                                               "up (at least one epoch), or of the optimiser steps with --schedule_unit step"),
    "schedule_unit": (dict(choices=SCHEDULE_UNITS), "the learning-rate schedule changes once per epoch, or at every "
                                                    "optimiser step (warm-up from 0 and decay over all the run's steps, "
                                                    "as the Hugging Face Trainer)"),
    "patience": (dict(type=non_negative(int, 100_000)), "stop after this many epochs without a better validation score (0 = never)"),
    "select_by": (dict(choices=SELECT_BY), "best epoch by validation weighted F1, validation loss, or F1 with the loss breaking ties (ties: the later epoch)"),
    "class_weights": (dict(choices=CLASS_WEIGHTS), "'balanced': weight the loss by inverse class frequency (imbalanced age/race)"),
    "time_masks": (dict(type=non_negative(int, 100)), "mel: SpecAugment time masks per clip"),
    "time_width": (dict(type=non_negative(int, 4096)), "mel: widest time mask (frames)"),
    "freq_masks": (dict(type=non_negative(int, 100)), "mel: SpecAugment frequency masks per clip"),
    "freq_width": (dict(type=non_negative(int, 4096)), "mel: widest frequency mask (image rows)"),
    "gain_db": (dict(type=non_negative(float, 60)), "mel: random gain of up to ± this many dB"),
    "mixup": (dict(type=non_negative(float, 100)), "mixup Beta(a, a) parameter a (0 = off)"),
    "augment": (dict(type=spec_flag, metavar="NAME[:P],..."),
                "waveform augmentation of each training clip before its features are made, new every epoch: transforms "
                "each applied with probability P (0.5 when left out), e.g. speed:0.5,pitch:0.3,noise:0.3; 'none' = off. "
                "mel: each training clip's spectrogram is re-made from its augmented audio (the split CSVs' "
                "Audio_file_path), then SpecAugment and gain apply as usual; fine-tuned encoders: the audio itself. "
                "The same transforms as augmentation.py: " + spec_help()),
    "normalize": (dict(choices=NORMALIZE), "'speaker': remove each speaker's own mean and spread (per value; per mel "
                                           "band), computed from the speaker's clips with no labels; for traits that "
                                           "vary within a speaker (emotion). It removes the signal of traits constant "
                                           "per speaker (sex, age, race)"),
    "eval_windows": (dict(choices=EVAL_WINDOWS), "mel with time_axis pad: score a clip longer than the window on all its "
                                                 "windows (hop half a window; mean probability), as predict.py scores a "
                                                 "recording, or on the centred one only"),
    "optimizer": (dict(choices=OPTIMIZERS), "'adamw': mini-batches, --learning_rate and --lr_schedule; 'lbfgs' (vector "
                                            "heads): full-batch L-BFGS to the optimum, each epoch one L2 strength "
                                            "(--C), the best on validation kept; learning rate and schedule unused"),
    "C": (dict(type=positive_float, nargs="+"), "lbfgs: inverse L2 strengths, as scikit-learn's C: each is one epoch (a "
                                                "fit from the same initial weights), the best on validation is kept "
                                                "(--epochs is unused)"),
    "calibration": (dict(choices=CALIBRATIONS), "after training, fit a temperature on the validation split so that the "
                                                "probabilities mean what they say (kept in the run card; predictions "
                                                "unchanged)"),
}


def _default_text(name: str, base: TrainConfig | None) -> str:
    if base is not None:
        return f"default: {getattr(base, name)}"
    default = getattr(RECIPES["default"], name)
    return f"default: {default}" + "".join(f"; --recipe {r}: {getattr(c, name)}" for r, c in RECIPES.items()
                                            if getattr(c, name) != default)


def add_training_flags(p: argparse.ArgumentParser, epochs: int, base: TrainConfig = TrainConfig()) -> None:
    """The seed's training flags (epochs, batch size, learning rate, seed) and --resume / --compile; the batch size,
    learning rate and seed default to `base`'s (a stage's fixed recipe)."""
    p.add_argument("--epochs", type=number(int, 1, 100_000), default=epochs, help="training epochs")
    p.add_argument("--batch_size", type=number(int, 1, 65536), default=base.batch_size, help="clips per batch")
    p.add_argument("--learning_rate", type=positive_float, default=base.learning_rate, help="optimiser learning rate")
    p.add_argument("--seed", type=seed_value, default=base.seed, help="random seed: same seed, same run (on CPU)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last saved epoch")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network: faster steps on a GPU after a warm-up of a minute or so "
                        "(needs a C++ compiler; on a CPU ~20%% faster cnn3 steps with --threads 1 on a busy machine: "
                        "benchmarks/RESULTS.md)")


def add_recipe_flags(p: argparse.ArgumentParser, names: tuple[str, ...] | None = None,
                     base: TrainConfig | None = None) -> None:
    """The recipe flags. With `base` (a stage with one fixed recipe) only `names` are offered, defaulting to base's;
    without, --recipe chooses the recipe and every flag is offered. Unset flags stay unset (SUPPRESS), so that
    train_config can tell them from a value the user typed."""
    g = p.add_argument_group("training recipe" + ("" if base else " (unset flags take the value of --recipe)"))
    if base is None:
        g.add_argument("--recipe", choices=list(RECIPES), default=None,
                       help="'default': the measured recipe (experiments/RESULTS.md); 'seed': the seed project's "
                            "(stretched images, no augmentation, constant learning rate, best epoch by F1); 'vector': "
                            "full-batch L-BFGS with the L2 strength chosen on validation (default for linear and mlp); "
                            "'frame_mlp': 'default' without SpecAugment's masks (default for frame_mlp; 'default' is "
                            "the others')")
    offered = names or tuple(RECIPE_FLAGS)
    for name in offered:
        kwargs, text = RECIPE_FLAGS[name]
        if "frames" not in offered and base is not None:  # a flag the stage lacks is named by its fixed value
            text = text.replace("--frames", f"{base.frames} frames")
        g.add_argument(f"--{name}", default=argparse.SUPPRESS, help=f"{text} ({_default_text(name, base)})", **kwargs)


def train_config(args: argparse.Namespace, base: TrainConfig | None = None, default_recipe: str = "default") -> TrainConfig:
    """The TrainConfig of parsed flags: the chosen recipe (or `base`; without --recipe, `default_recipe`, the model's
    own), with every flag the user gave on top."""
    start = base if base is not None else RECIPES[getattr(args, "recipe", None) or default_recipe]
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "recipe" and hasattr(args, f.name)}
    config = replace(start, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
    return replace(config, epochs=len(config.C)) if config.optimizer == "lbfgs" else config  # an epoch per C
