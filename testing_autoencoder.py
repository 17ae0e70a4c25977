"""Stage 4b: reload the saved autoencoder and re-measure its reconstruction loss on the training images.

Nothing is trained (no backward pass, no weight update). The eval-mode loss must equal the one that
train_autoencoder.py saved in its run card autoencoder_3_layers.json within 1e-5 relative; otherwise the script says
so and exits with status 1. Writes autoencoder_3_layers_reloaded.json and a grid of the reloaded model's
reconstructions.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import math
import os
import sys

from toolkit.cli import Parser, answer_help, get_args_parser, pick_device, run_main, split_csv
from toolkit.config import TrainConfig, positive_float, positive_int
from toolkit.errors import ToolkitError
from toolkit.fileio import write_json
from toolkit.io.labels import check_category
from toolkit.runcard import AUTOENCODER, read_card
from toolkit.training.autoencoder_files import DECODER_FILE, ENCODER_FILE, STEM
from toolkit.training.data import load_split, move_to_device

TOLERANCE = 1e-5  # relative; CPU reruns agree exactly, GPU kernels may differ in the last bits


def make_parser() -> Parser:
    p = get_args_parser(__doc__, splits=("train",))
    p.add_argument("--model_load_path", "--model_dir", "--model_save_path", dest="model_load_path", default="Models/",
                   help=f"folder holding {ENCODER_FILE}, {DECODER_FILE} and {STEM}.json (--model_save_path: the seed README's name)")
    p.add_argument("--batch_size", type=positive_int, default=TrainConfig.batch_size, help="images per forward pass")
    p.add_argument("--epochs", type=positive_int, default=5, help="accepted so the seed's commands run; ignored: nothing is trained")
    p.add_argument("--learning_rate", type=positive_float, default=TrainConfig.learning_rate,
                   help="accepted so the seed's commands run; ignored: nothing is trained")
    return p


if __name__ == "__main__":
    answer_help(make_parser)  # --help answers before the slow imports below

from models import AutoEncoder
from toolkit.training.autoencoding import plot_reconstructions, reconstruction_loss
from toolkit.training.engine import load_weights


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    check_category(args.category)
    device = pick_device(args.device, args.threads)
    folder = args.model_load_path
    card_file = os.path.join(folder, STEM + ".json")
    if not os.path.isfile(card_file):
        raise ToolkitError(f"{card_file}: not found; run train_autoencoder.py with --model_save_path {folder} first")
    card = read_card(card_file)
    saved = card.metrics.get("loss")
    if card.model != AUTOENCODER or not isinstance(saved, (int, float)) or not math.isfinite(saved):
        raise ToolkitError(f"{card_file}: not an autoencoder's run card with its final loss (metrics.loss {saved!r}); "
                           f"re-run train_autoencoder.py --model_save_path {folder}")
    model = AutoEncoder()
    hint = f"re-run train_autoencoder.py --model_save_path {folder}"
    load_weights(model.encoder, os.path.join(folder, ENCODER_FILE), hint)
    load_weights(model.decoder, os.path.join(folder, DECODER_FILE), hint)

    train_csv = split_csv(args, "train")
    # the images exactly as training saw them in its final measurement (time axis from the run card)
    train = move_to_device(load_split(train_csv, None, options=card.input_options, desc="train"), device)
    measured = reconstruction_loss(model.to(device), train, args.batch_size, device)
    relative = abs(measured - saved) / max(abs(saved), 1e-12)
    passed = relative <= TOLERANCE
    print(f"reconstruction loss (eval mode, {len(train)} training images): reloaded {measured:.8g}, "
          f"saved by training {saved:.8g}, relative difference {relative:.1e} (tolerance {TOLERANCE:.0e})")
    write_json({"train_csv": os.path.abspath(train_csv), "images": len(train), "loss": measured, "saved_loss": saved,
                "relative_difference": relative, "tolerance": TOLERANCE, "passed": passed}, os.path.join(folder, f"{STEM}_reloaded.json"))
    plot_reconstructions(model, train, device, os.path.join(folder, f"{STEM}_reloaded_reconstructions.png"),
                         f"reloaded {STEM}: eval-mode MSE {measured:.5f}")
    if not passed:
        trained_on = card.split.get("csvs", {}).get("train")
        same_data = os.path.abspath(train_csv) == trained_on and len(train) == card.metrics.get("images")
        why = ("the weight files changed after training" if same_data else
               f"training measured {card.metrics.get('images')} images of {trained_on}: pass that --train_csv")
        print(f"FAILED: the reloaded loss does not match the saved one; {why}", file=sys.stderr)
        sys.exit(1)
    print("OK: the saved autoencoder reloads and reproduces its loss")


if __name__ == "__main__":
    run_main(main)
