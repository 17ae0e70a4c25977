"""Stage 4c: a cnn3 classifier whose encoder starts from the autoencoder's (stage 4a's encoder_3_layers.pt).

The encoder is loaded strictly from {model_save_and_load_path}/encoder_3_layers.pt, a Linear(64 -> classes) layer
goes on top, and the network is trained like train_cnn.py: best epoch by validation, scored on the test set, saved
as {model_save_and_load_path}/cnn3_ae_{category}.pt with the same run card, metrics and plots. The result is an
ordinary cnn3 state dict, usable wherever a --model cnn3 checkpoint is.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import os

from models import build_model, check_input
from toolkit.cli import get_args_parser, in_folder, pick_device, run_main, seed_everything, split_csv
from toolkit.config import train_config
from toolkit.errors import ToolkitError
from toolkit.fileio import read_csv
from toolkit.io.labels import check_category, classes_for
from toolkit.io.splits import split_of_run
from toolkit.runcard import RunCard, read_card
from toolkit.training import distributed
from toolkit.training.autoencoding import ENCODER_FILE, STEM, freeze
from toolkit.training.data import load_split
from toolkit.training.engine import RunFiles, fit, load_weights


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


def main(argv: list[str] | None = None) -> None:
    p = get_args_parser(__doc__, epochs=60)
    p.add_argument("--model_save_and_load_path", "--model_dir", "--model_load_and_save_path", dest="model_save_and_load_path",
                   default="Models/", help=f"folder holding {ENCODER_FILE}; the classifier is saved there too "
                                           "(--model_load_and_save_path: the seed code's name)")
    p.add_argument("--encoder_file", default=ENCODER_FILE, help="the encoder state dict: a name in that folder, or a path")
    p.add_argument("--freeze_encoder", action="store_true",
                   help="train only the classification layer; the encoder (BatchNorm statistics too) stays as pre-trained")
    args = p.parse_args(argv)
    config = train_config(args)
    category = check_category(args.category)
    folder = args.model_save_and_load_path
    encoder_path = in_folder(args.encoder_file, folder)
    with distributed.session(pick_device(args.device, args.threads)) as device:  # torchrun: data-parallel
        train_classifier(args, config, category, folder, encoder_path, device)


def train_classifier(args, config, category: str, folder: str, encoder_path: str, device) -> None:
    csvs = {s: split_csv(args, s) for s in ("train", "val", "test")}
    split = split_of_run(csvs, category)
    classes = split.get("classes") or classes_for(category, read_csv(csvs["train"], [category])[category])
    seed_everything(config.seed)
    model = build_model("cnn3", len(classes))
    load_weights(model.encoder, encoder_path, "run train_autoencoder.py first, or point --model_save_and_load_path "
                 "(or --encoder_file) at the encoder_3_layers.pt it wrote")
    if args.freeze_encoder:
        freeze(model.encoder)
    train, val, test = (load_split(csvs[s], category, config, normalize=config.normalize, desc=s, classes=classes)
                        for s in csvs)
    check_input("cnn3", train.feature.kind, train.input_shape(), csvs["train"])
    warn_if_pretrained_on_other_inputs(os.path.join(os.path.dirname(encoder_path), STEM + ".json"), train.options, train.params)
    card = RunCard.new("cnn3", category, classes, train, config, split, vars(args), init=["autoencoder"],
                       init_detail={"encoder_file": os.path.abspath(encoder_path), "freeze_encoder": args.freeze_encoder})
    fit(model, train, val, test, config, RunFiles(folder, f"cnn3_ae_{category}"), card, device,
        resume=args.resume, compile=args.compile)


if __name__ == "__main__":
    run_main(main)
