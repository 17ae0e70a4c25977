#!/usr/bin/env bash
# Sweep categories × models: stages 1-2 once per category, stage 3 once per model, every run in its own
# folder $RUNS/{category}/{model}/, then one results table (summarize_runs.py).
#
# Edit the variables below (or set them in the environment: CATEGORIES="sex emotion" bash scripts/sweep.sh).
# A run whose metrics already exist is skipped, so re-running after an interruption continues the sweep;
# delete a run's folder to redo it. One failing run does not stop the others; they are listed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}  # the venv make builds
CORPUS=${CORPUS:-Data/demo}                     # holds $METADATA and AudioWAV/ (make demo writes Data/demo)
METADATA=${METADATA:-VideoDemographics.csv}     # CREMA-D's own, or the seed's CREMA_no_path.csv
DATA=${DATA:-Data/sweep}                        # the category CSVs, spectrograms and train/val/test CSVs
RUNS=${RUNS:-Models/sweep}                      # checkpoints, metrics and plots, one folder per run
CATEGORIES=${CATEGORIES:-"sex age race emotion"}
MODELS=${MODELS:-"cnn3 cnn9 resnet18"}          # any of: cnn3 cnn9 resnet18 resnet34 vgg16 efficientnet
EPOCHS=${EPOCHS:-30}
SPLIT=${SPLIT:-speaker}                         # speaker (no speaker in two splits) or random (the seed's)
SPEC_FLAGS=${SPEC_FLAGS:-}                      # more stage-2 flags, e.g. "--workers 8 --n_mels 128"
TRAIN_FLAGS=${TRAIN_FLAGS:---no-pretrained}     # more stage-3 flags; drop --no-pretrained to start from ImageNet

failed=()
for category in $CATEGORIES; do
    echo "== $category: stages 1-2"
    if ! $PYTHON data_preprocessing.py --csv_file "$CORPUS/$METADATA" --csv_path "$DATA/" \
            --audio_path "$CORPUS/AudioWAV/" --category "$category" ||
       ! $PYTHON generate_mel_spectrograms.py --load_csv_path "$DATA/" --save_spec_path "$DATA/" \
            --save_csv_path "$DATA/" --category "$category" --split "$SPLIT" $SPEC_FLAGS; then
        failed+=("$category (data)")
        continue
    fi
    for model in $MODELS; do
        run="$RUNS/$category/$model"
        if [ -f "$run/${model}_${category}_metrics.json" ]; then
            echo "== $category / $model: already done in $run (delete the folder to redo it)"
            continue
        fi
        echo "== $category / $model: stage 3 -> $run"
        $PYTHON train_cnn.py --csv_load_path "$DATA/" --category "$category" --model "$model" --epochs "$EPOCHS" \
            --model_save_path "$run/" $TRAIN_FLAGS || failed+=("$category / $model")
    done
done

echo "== results"
$PYTHON summarize_runs.py "$RUNS" || failed+=("summary")
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]} (see their error lines above)" >&2
    exit 1
fi
