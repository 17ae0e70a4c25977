"""Write a small randomly initialised wav2vec2 encoder to a folder, as a downloaded model would be laid out.

Example:
    python3 make_demo_encoder.py --out Models/demo_encoder
    python3 generate_mel_spectrograms.py ... --features ssl --encoder Models/demo_encoder
    python3 train_wav2vec2.py ... --encoder Models/demo_encoder --no-pretrained

Its weights are random: features from it carry little, and fine-tuning it is training a small encoder from scratch.
It lets every speech-encoder path run offline; for real results download a pretrained encoder once
(`hf download facebook/wav2vec2-base`) and pass its hub id.
"""
from __future__ import annotations

import argparse

from demo.encoder import save_demo_encoder
from toolkit.config import number, seed_value


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="Models/demo_encoder", help="output folder (default: Models/demo_encoder)")
    p.add_argument("--hidden", type=number(int, 8, 4096), default=32, help="transformer width (default: 32; wav2vec2-base: 768)")
    p.add_argument("--layers", type=number(int, 1, 48), default=2, help="transformer layers (default: 2; wav2vec2-base: 12)")
    p.add_argument("--conv_channels", type=number(int, 1, 4096), default=32, help="CNN front-end channels (default: 32; base: 512)")
    p.add_argument("--sr", type=number(int, 4000, 192_000), default=16000, help="sampling rate it takes (default: 16000)")
    p.add_argument("--seed", type=seed_value, default=0, help="random seed of the weights (default: 0)")
    args = p.parse_args(argv)
    if min(args.hidden, args.layers, args.conv_channels) < 1 or args.hidden % 16 and args.hidden > 16:
        p.error("--hidden, --layers and --conv_channels must be positive, --hidden a multiple of 16 above 16")
    out = save_demo_encoder(args.out, args.hidden, args.layers, args.conv_channels, args.sr, args.seed)
    print(f"wrote a random-init wav2vec2 ({args.layers} layers × {args.hidden}, {args.sr} Hz) to {out}")


if __name__ == "__main__":
    main()
