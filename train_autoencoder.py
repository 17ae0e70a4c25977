"""Stage 4a: train the seed's 3-layer convolutional autoencoder on the training images (labels are not used).

Saves {model_save_path}/encoder_3_layers.pt and decoder_3_layers.pt (plain state dicts of the final epoch) and
autoencoder_3_layers.json holding the final eval-mode reconstruction loss on the training images, which
testing_autoencoder.py must reproduce; plus the per-epoch losses (_metrics.csv), the loss curve and a grid of
inputs above their reconstructions. cnn_classifier.py then starts a classifier from encoder_3_layers.pt.
"""
from __future__ import annotations

import os
import time

import pandas as pd
import torch
from tqdm import tqdm

from models import AutoEncoder
from toolkit.autoencoding import DECODER_FILE, ENCODER_FILE, STEM, plot_loss_curve, plot_reconstructions, reconstruction_loss, train_epoch
from toolkit.cli import RECIPES, get_args_parser, non_negative, pick_device, run_main, seed_everything, split_csv
from toolkit.data import TIME_AXES, input_meta, input_options, load_images, move_to_device
from toolkit.engine import RunFiles, load_last, make_optimizer, save_last
from toolkit.fileio import output_dir, write_csv, write_json, write_torch
from toolkit.labels import check_category


def main(argv: list[str] | None = None) -> None:
    p = get_args_parser(__doc__, epochs=200, splits=("train",), recipe=False)
    p.add_argument("--model_save_path", default="Models/", help="folder for the encoder and decoder state dicts, JSON and plots")
    p.add_argument("--weight_decay", type=non_negative(float), default=0.0, help="AdamW weight decay")
    p.add_argument("--time_axis", choices=TIME_AXES, default=RECIPES["default"]["time_axis"],
                   help="how clips become 128x128 inputs: use what cnn_classifier.py will use (its --recipe's time_axis); "
                        "'pad' trains on a random 128-frame window of each clip per epoch")
    args = p.parse_args(argv)
    category = check_category(args.category)
    device = pick_device(args.device, args.threads)
    seed_everything(args.seed)
    output_dir(args.model_save_path, "--model_save_path")  # an unusable folder fails now, not after loading
    train_csv = split_csv(args, "train")
    inputs = input_meta(args.time_axis)  # always 128x128: the encoder's Linear layer fixes the size
    # no labels: any CSV of images will do
    train = move_to_device(load_images(train_csv, None, desc="train", **input_options(inputs)), device)
    model = AutoEncoder().to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if args.compile else model  # `model` keeps plain parameter names for the files
    optimizer = make_optimizer(model, args.learning_rate, args.weight_decay)
    generator = torch.Generator().manual_seed(args.seed)
    run = RunFiles(args.model_save_path, STEM)

    history, start_epoch = [], 1
    if args.resume and os.path.isfile(run.last):
        state = load_last(run.last, model, optimizer, generator)
        history, start_epoch = state["history"], state["epoch"] + 1
        print(f"resuming {run.last} after epoch {state['epoch']}")
    started = time.time() - sum(h["seconds"] for h in history)
    bar = tqdm(range(start_epoch, args.epochs + 1), desc=f"training {STEM}", unit="epoch", initial=start_epoch - 1, total=args.epochs)
    for epoch in bar:
        t0 = time.time()
        loss = train_epoch(net, train, optimizer, args.batch_size, device, generator)
        history.append({"epoch": epoch, "train_loss": loss, "seconds": time.time() - t0})
        save_last(run.last, model, optimizer, generator, epoch, history)
        bar.write(f"epoch {epoch:3d}/{args.epochs} train_loss {loss:.6f}")

    # The number testing_autoencoder.py checks: eval mode (BatchNorm running statistics), no weight updates.
    final = reconstruction_loss(model, train, args.batch_size, device)
    write_torch({k: v.cpu() for k, v in model.encoder.state_dict().items()}, os.path.join(run.folder, ENCODER_FILE))
    write_torch({k: v.cpu() for k, v in model.decoder.state_dict().items()}, os.path.join(run.folder, DECODER_FILE))
    write_json({"model": STEM, "category": category, "encoder_file": ENCODER_FILE, "decoder_file": DECODER_FILE,
                **inputs, "spectrogram": train.spectrogram, "train_csv": os.path.abspath(train_csv),
                "images": len(train), "epochs": len(history), "seconds": time.time() - started,
                "loss": final, "loss_definition": "eval-mode mean squared error per pixel on the training images, inputs in [0, 1]",
                "args": vars(args)}, run.sidecar)
    write_csv(pd.DataFrame(history), run.path("_metrics.csv"))
    plot_loss_curve(history, run.path("_loss_curve.png"), f"{STEM} on {os.path.basename(train_csv)}")
    plot_reconstructions(model, train, device, run.path("_reconstructions.png"), f"{STEM}: eval-mode MSE {final:.5f}")
    print(f"final reconstruction loss (eval mode, {len(train)} training images): {final:.8g}")
    print(f"saved {ENCODER_FILE}, {DECODER_FILE}, {STEM}.json, metrics and plots in {run.folder}")


if __name__ == "__main__":
    run_main(main)
