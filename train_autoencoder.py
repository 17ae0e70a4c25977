"""Stage 4a: train the seed's 3-layer convolutional autoencoder on the training images (labels are not used).

Saves {model_dir}/encoder_3_layers.pt and decoder_3_layers.pt (plain state dicts of the final epoch) and
autoencoder_3_layers.json, its run card, holding the final eval-mode reconstruction loss on the training images,
which testing_autoencoder.py must reproduce; plus the per-epoch losses (_metrics.csv), the loss curve and a grid of
inputs above their reconstructions. cnn_classifier.py then starts a classifier from encoder_3_layers.pt.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import os
from dataclasses import replace

import pandas as pd

from models import check_input
from toolkit.cli import Parser, add_features_flag, add_model_dir_flag, answer_help, get_args_parser, run_main
from toolkit.config import RECIPES, add_recipe_flags
from toolkit.fileio import write_csv, write_torch
from toolkit.runcard import AUTOENCODER
from toolkit.training.data import load_split, move_to_device

# The seed's loop (no weight decay, constant learning rate), on inputs made like the default recipe's classifier.
RECIPE = replace(RECIPES["seed"], time_axis=RECIPES["default"].time_axis)


def make_parser() -> Parser:
    p = get_args_parser(__doc__, epochs=200, splits=("train",), recipe=False)
    add_recipe_flags(p, names=("weight_decay", "time_axis"), base=RECIPE)
    add_model_dir_flag(p, "folder for the encoder and decoder state dicts, run card and plots")
    add_features_flag(p)
    return p


if __name__ == "__main__":
    answer_help(make_parser)  # --help answers before the slow imports below

import torch

from models import AutoEncoder
from toolkit.training.autoencoding import DECODER_FILE, ENCODER_FILE, STEM, Reconstruction, plot_loss_curve, plot_reconstructions, reconstruction_loss
from toolkit.training.engine import train_loop
from toolkit.training.setup import set_up


def main(argv: list[str] | None = None) -> None:
    stage = set_up(make_parser(), argv, "train_autoencoder.py", base=RECIPE)
    config, device = stage.config, stage.device
    train_csv = stage.csvs(("train",))["train"]
    train = load_split(train_csv, None, config, desc="train", features=stage.args.features)  # no labels: any images do
    check_input("cnn3", train.feature.kind, train.input_shape(), train_csv)
    move_to_device(train, device)
    model = stage.new_model(AutoEncoder).to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    run = stage.run_files(STEM)

    with run.lock():
        loop = train_loop(model, config, run, device, Reconstruction(train, config.batch_size, device),
                          resume=stage.args.resume, compile=stage.args.compile)
        # The number testing_autoencoder.py checks: eval mode (BatchNorm running statistics), no weight updates.
        final = reconstruction_loss(model, train, config.batch_size, device)
        write_torch({k: v.cpu() for k, v in model.encoder.state_dict().items()}, os.path.join(run.folder, ENCODER_FILE))
        write_torch({k: v.cpu() for k, v in model.decoder.state_dict().items()}, os.path.join(run.folder, DECODER_FILE))
        card = stage.card(AUTOENCODER, [], train, {"kind": "unknown", "csvs": {"train": os.path.abspath(train_csv)}},
                          init_detail={"encoder_file": ENCODER_FILE, "decoder_file": DECODER_FILE})
        card.metrics = {"loss": final, "images": len(train), "epochs": len(loop.history), "seconds": loop.seconds,
                        "loss_definition": "eval-mode mean squared error per pixel on the training images, inputs in [0, 1]"}
        card.save(run.card)
        write_csv(pd.DataFrame(loop.history), run.path("_metrics.csv"))
        plot_loss_curve(loop.history, run.path("_loss_curve.png"), f"{STEM} on {os.path.basename(train_csv)}")
        plot_reconstructions(model, train, device, run.path("_reconstructions.png"), f"{STEM}: eval-mode MSE {final:.5f}")
    print(f"final reconstruction loss (eval mode, {len(train)} training images): {final:.8g}")
    print(f"saved {ENCODER_FILE}, {DECODER_FILE}, {STEM}.json, metrics and plots in {run.folder}")


if __name__ == "__main__":
    run_main(main)
