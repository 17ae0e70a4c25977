"""The seed project's name for fine-tuning wav2vec2 (its Transformer/Training/training_wav2vec2.py): runs
train_wav2vec2.py, which has the seed's flags (--csv_load_path, --category, --model_save_name, --model_save_path,
--train_csv, --val_csv, --epochs, --batch_size, --learning_rate; same defaults) and more (--help).

Example (the seed's command line):
    python3 training_wav2vec2.py --csv_load_path Data/ --category emotion --model_save_name emotion \\
        --model_save_path Models/

The seed's Hugging Face Trainer wrote checkpoints to {model_save_path}wav2vec2-base-{model_save_name}/; here the best
epoch is {model_save_path}/{model_save_name}.pt with its run card, scored on {category}_test.csv too.
evaluate_wav2vec2.py (or evaluate.py) scores it again on any labelled data.
"""
from __future__ import annotations

import toolkit  # noqa: F401  (first: a Ctrl-C during the slow imports below then ends in one line)

from toolkit.cli import run_main
from train_wav2vec2 import main

if __name__ == "__main__":
    run_main(main)
