#!/usr/bin/env bash
# The whole pipeline on the embedded demo corpus, offline, in a few minutes on 2 CPU cores.
# Edit the variables to try another category or model; every command is the one a user types.
# Incremental: a model whose run card is complete (trained and scored on test) is kept and reported as done on a
# second run; an interrupted one (its card says "complete": false) is trained again. Delete Models/demo to redo all.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DATA=Data/demo            # corpus + CSVs + spectrograms
MODELS=Models/demo        # checkpoints, metrics and plots
CATEGORY=sex
EPOCHS=${EPOCHS:-10}
STARTED=$SECONDS

# once CARD COMMAND...: run the training COMMAND unless CARD is the run card of a finished run
once() {
    local card=$1; shift
    if [ -f "$card" ] && $PYTHON -c 'import sys; from toolkit.runcard import read_card; read_card(sys.argv[1])' "$card" 2>/dev/null; then
        echo "   done before: $card is a finished run (delete it to train again)"
    else
        "$@"
    fi
}

# 30 actors x 36 clips (6 per emotion; CREMA-D has 82 per actor): every stage and model as with all 82, on 2.3x fewer
# clips, which set the time of synthesis, features, training and encoder extraction alike (the goal: < 5 min on 2
# idle cores). DEMO_FLAGS="--clips_per_actor 82" makes the full-size corpus.
echo "== demo corpus: 30 actors x 36 clips (+ 4 unlabeled actors for stage 5)"
$PYTHON make_demo_data.py --out $DATA --unlabeled_actors 4 ${DEMO_FLAGS:---clips_per_actor 36}

echo "== stage 1: metadata + audio -> ${CATEGORY}_with_audio_path.csv"
$PYTHON data_preprocessing.py --csv_file VideoDemographics.csv --csv_path $DATA/ --audio_path $DATA/AudioWAV/ --category $CATEGORY

echo "== stage 2: log-mel spectrograms + speaker-disjoint train/val/test split"
$PYTHON generate_mel_spectrograms.py --load_csv_path $DATA/ --save_spec_path $DATA/ --save_csv_path $DATA/ --category $CATEGORY

# Stages 3 + 5, stage 4 and the speech encoders each need only stage 2's files and their own line's earlier models,
# so the three lines run side by side, every process on one CPU thread: on 2 cores that takes about half the time of
# one after the other, where PyTorch's second thread gains little on these small networks. The first line prints as
# it goes; the others write $MODELS/logs/{stage_4,encoders}.log, shown when they end. A failed line stops the demo.
THREADS="--threads 1"

stage_3_and_5() {
    echo "== stage 3: train cnn3"
    once $MODELS/cnn3_$CATEGORY.json $PYTHON train_cnn.py --csv_load_path $DATA/ --category $CATEGORY --model cnn3 --epochs $EPOCHS --batch_size 64 \
        --learning_rate 1e-3 --model_save_path $MODELS/ $THREADS

    echo "== stage 5: pseudo-labeling on the unlabeled actors, starting from the stage-3 cnn3"
    once $MODELS/cnn3_${CATEGORY}_PL.json $PYTHON pseudo_labeling_semisupervised.py --csv_load_path $DATA/ --category $CATEGORY --unlabeled_csv unlabeled.csv \
        --epochs ${PL_EPOCHS:-4} --batch_size 64 --learning_rate 1e-3 --model cnn3 --cnn_param_file cnn3_${CATEGORY}.pt \
        --pseudolabeling_param_file cnn3_${CATEGORY}_PL.pt --model_save_and_load_path $MODELS/ --T1 0 --T2 3 $THREADS
}

stage_4() {
    echo "== stage 4a: autoencoder pre-training on the training images"
    once $MODELS/autoencoder_3_layers.json $PYTHON train_autoencoder.py --csv_load_path $DATA/ --category $CATEGORY --train_csv ${CATEGORY}_train.csv \
        --epochs ${AE_EPOCHS:-3} --batch_size 64 --learning_rate 1e-3 --model_save_path $MODELS/ $THREADS

    echo "== stage 4b: reload the autoencoder, check it reproduces its loss"
    $PYTHON testing_autoencoder.py --csv_load_path $DATA/ --category $CATEGORY --train_csv ${CATEGORY}_train.csv \
        --model_load_path $MODELS/ $THREADS

    echo "== stage 4c: cnn3 classifier from the pre-trained encoder"
    once $MODELS/cnn3_ae_$CATEGORY.json $PYTHON cnn_classifier.py --csv_load_path $DATA/ --category $CATEGORY --epochs ${AE_CLASSIFIER_EPOCHS:-6} --batch_size 64 \
        --learning_rate 1e-3 --model_save_and_load_path $MODELS/ $THREADS
}

encoders() {
    echo "== speech encoders, offline: a small random-init wav2vec2 (real use: hf download facebook/wav2vec2-base once)"
    [ -f $MODELS/demo_encoder/config.json ] || $PYTHON make_demo_encoder.py --out $MODELS/demo_encoder
    $PYTHON generate_mel_spectrograms.py --load_csv_path $DATA/ --save_spec_path $DATA/ --save_csv_path $DATA/ssl/ \
        --category $CATEGORY --features ssl --encoder $MODELS/demo_encoder
    once $MODELS/ssl/mlp_$CATEGORY.json $PYTHON train_cnn.py --csv_load_path $DATA/ssl/ --category $CATEGORY --model mlp --epochs $EPOCHS \
        --model_save_path $MODELS/ssl/ $THREADS
    # fine-tuning end to end, kept short on a CPU: one epoch on 2-second crops with the convolutional front end frozen
    once $MODELS/wav2vec2_$CATEGORY.json $PYTHON train_wav2vec2.py --csv_load_path $DATA/ --category $CATEGORY --encoder $MODELS/demo_encoder --no-pretrained \
        --epochs ${W2V_EPOCHS:-1} --max_seconds 2 --freeze_feature_encoder --batch_size 16 --gradient_accumulation_steps 1 \
        --learning_rate 5e-4 --model_save_path $MODELS/ $THREADS
}

# alongside NAME: run the function NAME in the background, its output in $MODELS/logs/NAME.log
SIDE=()
alongside() {
    "$1" > $MODELS/logs/$1.log 2>&1 &
    SIDE+=("$!:$1")
}
# a stopped or failed demo stops the lines still running (background jobs ignore Ctrl-C in a script)
trap 'for job in ${SIDE[@]+"${SIDE[@]}"}; do { pkill -P "${job%%:*}"; kill "${job%%:*}"; } 2>/dev/null || true; done' EXIT

mkdir -p $MODELS/logs
echo "== stage 4 and the speech encoders run alongside stages 3 and 5 (output in $MODELS/logs/, shown when each ends)"
alongside stage_4
[ "${ENCODERS:-1}" = 1 ] && alongside encoders  # ENCODERS=0 leaves out the speech encoders, the slowest part on a CPU
stage_3_and_5
for job in "${SIDE[@]}"; do
    status=0
    wait "${job%%:*}" || status=$?
    cat $MODELS/logs/${job#*:}.log
    [ $status = 0 ] || { echo "error: the ${job#*:} line failed (exit status $status; its output above, also in $MODELS/logs/)"; exit $status; }
done
SIDE=()

echo "== summary (test scores on a synthetic corpus: they show the pipeline works, not how it does on real speech)"
$PYTHON summarize_runs.py $MODELS/
cat <<EOF

Models, run cards, metrics and plots: $MODELS/  (per run: *_metrics.json, *_confusion_matrix.png,
  *_training_curves.png, *_test_predictions.csv); all runs in one table: $MODELS/runs_summary.csv, $MODELS/runs_f1.png
Corpus, spectrograms and split CSVs: $DATA/
Web demo:  $PYTHON app.py --model_dir $MODELS   (then open http://127.0.0.1:7860)
Next steps: README.md, "Walkthrough".
EOF
echo "demo finished in $(( (SECONDS - STARTED) / 60 )) min $(( (SECONDS - STARTED) % 60 )) s"
