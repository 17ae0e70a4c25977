"""Stage 4c: a cnn3 classifier whose encoder starts from the autoencoder's (stage 4a's encoder_3_layers.pt).

The encoder is loaded strictly from {model_dir}/encoder_3_layers.pt, a Linear(64 -> classes) layer
goes on top, and the network is trained like train_cnn.py: best epoch by validation, scored on the test set, saved
as {model_dir}/cnn3_ae_{category}.pt with the same run card, metrics and plots. The result is an
ordinary cnn3 state dict, usable wherever a --model cnn3 checkpoint is.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import os

from models import build_model, check_input
from toolkit.cli import Parser, add_features_flag, add_model_dir_flag, answer_help, get_args_parser, in_folder, run_main
from toolkit.errors import ToolkitError
from toolkit.runcard import read_card
from toolkit.training.autoencoder_files import ENCODER_FILE, STEM


def warn_if_pretrained_on_other_inputs(ae_card: str, options: dict, params: dict) -> None:
    """Loading still works, but an encoder pre-trained on differently made images is a poor start: say so."""
    if not os.path.isfile(ae_card):
        return
    try:
        ae = read_card(ae_card)
    except ToolkitError as e:  # only a comparison rests on it: say so and go on
        print(f"warning: the autoencoder's run card cannot be read ({e}); its inputs are not compared with these")
        return
    if ae.input.get("time_axis") != options["time_axis"]:
        print(f"warning: the autoencoder ({ae_card}) was trained with --time_axis {ae.input.get('time_axis')}, "
              f"this classifier uses {options['time_axis']}; pass the same --time_axis to both")
    if ae.features["params"] != params:
        print(f"warning: the autoencoder ({ae_card}) was trained on spectrograms made with other parameters")


def make_parser() -> Parser:
    p = get_args_parser(__doc__, epochs=60)
    add_model_dir_flag(p, f"folder holding {ENCODER_FILE}; the classifier is saved there too",
                       aliases=("model_save_and_load_path", "model_load_and_save_path"))
    p.add_argument("--encoder_file", default=ENCODER_FILE, help="the encoder state dict: a name in that folder, or a path")
    p.add_argument("--freeze_encoder", action="store_true",
                   help="train only the classification layer; the encoder (BatchNorm statistics too) stays as pre-trained")
    add_features_flag(p)
    return p


if __name__ == "__main__":
    answer_help(make_parser)  # --help answers before the slow imports below

from toolkit.training import distributed
from toolkit.training.autoencoding import freeze
from toolkit.training.engine import load_weights
from toolkit.training.setup import Stage, set_up


def main(argv: list[str] | None = None) -> None:
    stage = set_up(make_parser(), argv, "cnn_classifier.py")
    encoder_path = in_folder(stage.args.encoder_file, stage.model_dir)
    with distributed.session(stage.device) as stage.device:  # torchrun: data-parallel
        train_classifier(stage, encoder_path)


def train_classifier(stage: Stage, encoder_path: str) -> None:
    args = stage.args
    train, val, test, split = stage.splits()
    check_input("cnn3", train.feature.kind, train.input_shape(), stage.csvs()["train"])
    warn_if_pretrained_on_other_inputs(os.path.join(os.path.dirname(encoder_path), STEM + ".json"), train.options, train.params)

    def make_model():
        model = build_model("cnn3", len(train.classes))
        load_weights(model.encoder, encoder_path, "run train_autoencoder.py first, or point --model_dir (or "
                     "--encoder_file) at the encoder_3_layers.pt it wrote")
        if args.freeze_encoder:
            freeze(model.encoder)
        return model

    card = stage.card("cnn3", train.classes, train, split, init=["autoencoder"],
                      init_detail={"encoder_file": os.path.abspath(encoder_path), "freeze_encoder": args.freeze_encoder})
    stage.fit(stage.new_model(make_model), train, val, test, stage.run_files(f"cnn3_ae_{stage.category}"), card)


if __name__ == "__main__":
    run_main(main)
