#!/usr/bin/env bash
# The whole pipeline on the embedded demo corpus, offline, in a few minutes on 2 CPU cores.
# Edit the variables to try another category or model; every command is the one a user types.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DATA=Data/demo            # corpus + CSVs + spectrograms
MODELS=Models/demo        # checkpoints, metrics and plots
CATEGORY=sex
EPOCHS=${EPOCHS:-15}

echo "== demo corpus"
$PYTHON make_demo_data.py --out $DATA

echo "== stage 1: metadata + audio -> ${CATEGORY}_with_audio_path.csv"
$PYTHON data_preprocessing.py --csv_file VideoDemographics.csv --csv_path $DATA/ --audio_path $DATA/AudioWAV/ --category $CATEGORY

echo "== stage 2: log-mel spectrograms + speaker-disjoint train/val/test split"
$PYTHON generate_mel_spectrograms.py --load_csv_path $DATA/ --save_spec_path $DATA/ --save_csv_path $DATA/ --category $CATEGORY

echo "== stage 3: train cnn3"
$PYTHON train_cnn.py --csv_load_path $DATA/ --category $CATEGORY --model cnn3 --epochs $EPOCHS --batch_size 64 \
    --learning_rate 1e-3 --model_save_path $MODELS/
