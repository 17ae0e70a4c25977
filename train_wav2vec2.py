"""Fine-tune a pretrained speech encoder (wav2vec2, HuBERT, WavLM, ...) with a classification head, end to end.

The seed project's best model (its Transformer/training_wav2vec2.py, with the same flags and defaults: 20 epochs,
batch 4, 4 accumulated batches, learning rate 3e-5 warmed up over the first 10% of the epochs, then decayed
linearly; best epoch on validation). Here it trains with the toolkit's own engine on stage 2's split CSVs, so it
sees the same clips and speakers as the CNNs: each clip is read from the CSVs' Audio_file_path at the encoder's
sampling rate (any split CSV works, mel or egemaps). Clips longer than --max_seconds are cropped at random in
training and scored whole (in chunks) at evaluation. bf16 on a CUDA GPU.

--encoder is a Hugging Face hub id (looked up in the local cache; get it once with `hf download ID`) or a directory
with config.json, preprocessor_config.json and the weights. --no-pretrained trains the same architecture from random
weights (the directory then needs no weights). Saves {model_dir}/{model_save_name}.pt (a plain state dict)
with its run card, which holds the encoder's config: predict.py and stage 5 rebuild the model from the two files.
--folds K runs speaker-grouped K-fold cross-validation instead, as train_cnn.py does.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import os
from dataclasses import asdict

from models import build_model
from toolkit.cli import Parser, add_model_dir_flag, fold_count, get_args_parser, run_main
from toolkit.config import FINETUNE, add_recipe_flags, at_least, positive_int
from toolkit.features.encoders import encoder_info, min_samples
from toolkit.features.waveform import Waveform, WaveformParams
from toolkit.training.setup import set_up

MODEL = "wav2vec2"  # the models.MODELS name of a fine-tuned encoder, whichever encoder it is


def make_parser() -> Parser:
    p = get_args_parser(__doc__, epochs=FINETUNE.epochs, recipe=False, base=FINETUNE)
    add_recipe_flags(p, names=("weight_decay", "lr_schedule", "warmup", "patience", "select_by", "class_weights", "augment"),
                     base=FINETUNE)
    p.add_argument("--encoder", default="facebook/wav2vec2-base",
                   help="pretrained speech encoder: Hugging Face hub id (from the local cache) or model directory")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="random weights from the encoder's config instead of its pretrained ones (from scratch)")
    p.add_argument("--model_save_name", default=None,
                   help=f"file name of the fine-tuned model, with or without .pt (default {MODEL}_{{category}})")
    add_model_dir_flag(p, "folder for the state dict, run card, metrics and plots")
    p.add_argument("--max_seconds", type=at_least(0.5, float), default=FINETUNE.max_seconds,
                   help="training crops clips longer than this at random (evaluation takes whole clips)")
    p.add_argument("--gradient_accumulation_steps", dest="accumulate", type=positive_int, default=FINETUNE.accumulate,
                   help="batches whose gradients are summed before each optimiser step")
    p.add_argument("--freeze_feature_encoder", action="store_true",
                   help="keep the encoder's CNN front end (waveform -> frames) as pretrained; train the rest")
    p.add_argument("--gradient_checkpointing", action="store_true",
                   help="recompute activations in the backward pass: less memory, slower steps")
    p.add_argument("--folds", type=fold_count, default=0,
                   help="K >= 2: speaker-grouped K-fold cross-validation over all three CSVs instead of one run")
    return p


def main(argv: list[str] | None = None) -> None:
    stage = set_up(make_parser(), argv, "train_wav2vec2.py", base=FINETUNE)
    args, config = stage.args, stage.config
    info = encoder_info(args.encoder)  # offline and not found: one line now, before any clip is read
    params = WaveformParams(sr=info.sr, normalize=info.normalize, min_samples=min_samples(info.config))
    train, val, test, split = stage.splits(args.folds, from_audio=Waveform(params))
    classes = train.classes
    # Everything the network needs besides its weights: predict.py and stage 5 rebuild it from the run card alone.
    encoder = {**asdict(info), "window": round(config.max_seconds * info.sr)}
    card = stage.card(MODEL, classes, train, split, init=["pretrained-speech" if args.pretrained else "scratch"],
                      init_detail={"encoder": encoder, "gradient_checkpointing": args.gradient_checkpointing})
    stem = os.path.splitext(args.model_save_name)[0] if args.model_save_name else f"{MODEL}_{stage.category}"
    run = stage.run_files(stem)

    def make_model():
        model = build_model(MODEL, len(classes), train.input_shape(), pretrained=args.pretrained, encoder=encoder)
        if config.freeze_feature_encoder:
            model.encoder.freeze_feature_encoder()
        if args.gradient_checkpointing:
            model.encoder.gradient_checkpointing_enable()
        return model

    print(f"{info.source}: {info.config.get('model_type')} encoder, {'pretrained' if args.pretrained else 'random'} "
          f"weights, {info.sr} Hz audio; {len(train)} clips")
    if args.folds:
        from toolkit.training.crossval import cross_validate

        cross_validate(train, args.folds, config, make_model, run, card, stage.device)
        return
    stage.fit(stage.new_model(make_model), train, val, test, run, card)


if __name__ == "__main__":
    run_main(main)
