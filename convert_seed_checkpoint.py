"""Convert a state dict saved by the seed project's code into this toolkit's parameter names.

The seed saved plain state dicts with its own layer names (enc1, enc2, batchnorm, enc3, encoder_lin for cnn3 and the
autoencoder's encoder; conv1..9, convnorm1..9, linear for cnn9; decoder_lin, dec1..3, batchnorm1..2 for the decoder).
The tensors are the same; only the names differ. The converted file loads strictly into --model and is written
next to nothing else: a classifier still needs a run card (train or fine-tune it here), an encoder is what
cnn_classifier.py --encoder_file takes.

    python3 convert_seed_checkpoint.py --model encoder --input encoder_3_layers.pt --output Models/encoder_3_layers.pt
    python3 convert_seed_checkpoint.py --model cnn9 --input cnn9_race.pt --output Models/cnn9_race_seed.pt

What stays different (docs/seed-differences.md): the seed fed its networks viridis-coloured JPG screenshots of its
spectrograms with a channel scramble, which this toolkit does not reproduce, so a converted classifier sees other
inputs than it was trained on; and the seed's decoder ends in tanh where ours ends in sigmoid (the weights convert,
the last activation differs).
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import os

from toolkit.cli import Parser, answer_help, run_main
from toolkit.errors import ToolkitError
from toolkit.fileio import load_checkpoint, write_torch

# seed name prefix -> ours, for the encoder that cnn3 and the autoencoder share (ours: conv Sequential + fc Sequential)
ENCODER_NAMES = {"enc1.": "conv.0.", "enc2.": "conv.2.", "batchnorm.": "conv.3.", "enc3.": "conv.5.",
                 "encoder_lin.0.": "fc.1.", "encoder_lin.1.": "fc.2."}
DECODER_NAMES = {"decoder_lin.0.": "fc.0.", "decoder_lin.1.": "fc.1.", "dec1.": "deconv.0.", "batchnorm1.": "deconv.1.",
                 "dec2.": "deconv.3.", "batchnorm2.": "deconv.4.", "dec3.": "deconv.6."}


def cnn9_names() -> dict[str, str]:
    """conv1..9 / convnorm1..9 -> the positions of our CNN9's Conv2d / BatchNorm2d layers in `features`."""
    from torch import nn

    layers = list(CNN9(2).features)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    norms = [i for i, m in enumerate(layers) if isinstance(m, nn.BatchNorm2d)]
    names = {f"conv{k}.": f"features.{i}." for k, i in enumerate(convs, 1)}
    names.update({f"convnorm{k}.": f"features.{i}." for k, i in enumerate(norms, 1)})
    return {**names, "linear.": "classifier."}


NAMES = {  # --model: its seed prefixes -> ours (cnn9's read off our network, when asked for)
    "cnn3": lambda: {**{k: "encoder." + v for k, v in ENCODER_NAMES.items()}, "classifier.": "classifier."},
    "cnn9": cnn9_names,
    "encoder": lambda: ENCODER_NAMES,
    "decoder": lambda: DECODER_NAMES,
}


def rename(state: dict, names: dict[str, str], source: str) -> dict:
    """Every key's seed prefix replaced by ours; a key no prefix matches is a one-line error."""
    out = {}
    for key, value in state.items():
        prefix = next((p for p in names if key.startswith(p)), None)
        if prefix is None:
            raise ToolkitError(f"{source}: parameter '{key}' is not one of the seed's names for this model "
                               f"({', '.join(sorted({p.rstrip('.') for p in names}))}); check --model")
        out[names[prefix] + key[len(prefix):]] = value
    return out


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--model", required=True, choices=list(NAMES), help="what the seed's file holds")
    p.add_argument("--input", required=True, help="the seed's .pt file (a state dict)")
    p.add_argument("--output", required=True, help="where the converted state dict is written")
    return p


if __name__ == "__main__":
    answer_help(get_args_parser)  # --help answers before the slow imports below

from models import CNN3, CNN9, Decoder, Encoder
from toolkit.training.engine import load_state


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise ToolkitError(f"{args.output}: would overwrite the seed's file; pass another --output")
    state = load_checkpoint(args.input, "pass the seed's state dict file")
    if not isinstance(state, dict):
        raise ToolkitError(f"{args.input}: holds a {type(state).__name__}, not a state dict; pass the seed's state dict file")
    converted = rename(state, NAMES[args.model](), args.input)
    if args.model in ("cnn3", "cnn9"):
        if "classifier.weight" not in converted:
            raise ToolkitError(f"{args.input}: no classifier layer ('classifier' or 'linear'); is it an encoder? pass --model encoder")
        classes = len(converted["classifier.weight"])
        model = CNN3(classes) if args.model == "cnn3" else CNN9(classes)
    else:
        model = Encoder() if args.model == "encoder" else Decoder()
    load_state(model, converted, args.input, "check --model")  # strictly: every tensor has its place and shape
    write_torch(converted, args.output)
    print(f"wrote {args.output}: the seed's {args.model}, {len(converted)} tensors, loading strictly into ours")


if __name__ == "__main__":
    run_main(main)
