"""evaluate.py, the per-group report, fusion, and the seed's command lines that must not do something else."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import run_script
from models import build_model


def file_bytes(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_stage_4c_line_of_the_seed_readme_never_overwrites_stage_3s_model(trained_cnn3, sex_data, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(trained_cnn3, folder)
    before = file_bytes(folder)
    seed_line = ["--csv_load_path", sex_data, "--category", "sex", "--train_csv", "sex_train.csv", "--val_csv",
                 "sex_val.csv", "--test_csv", "sex_test.csv", "--epochs", "1", "--batch_size", "16", "--learning_rate",
                 "1e-3", "--model_save_and_load_path", folder, "--threads", "1"]
    proc = run_script("train_cnn.py", *seed_line, check=False, in_process=True)
    assert proc.returncode == 2 and "encoder_3_layers.pt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert file_bytes(folder) == before  # no autoencoder yet: stopped before writing anything

    torch.manual_seed(0)
    torch.save(build_model("cnn3", 2).encoder.state_dict(), folder / "encoder_3_layers.pt")
    proc = run_script("train_cnn.py", *seed_line, in_process=True)
    assert "running cnn_classifier.py" in proc.stdout
    card = json.loads((folder / "cnn3_ae_sex.json").read_text())
    assert card["init"] == ["autoencoder"] and card["training"]["epochs"] == 1
    after = file_bytes(folder)
    assert all(after[name] == data for name, data in before.items())  # stage 3's cnn3_sex.* untouched

    proc = run_script("train_cnn.py", *seed_line, "--model", "resnet18", check=False, in_process=True)
    assert proc.returncode == 2 and "that is stage 4c (cnn_classifier.py)" in proc.stderr


def test_train_wav2vec2_takes_model_dir(tmp_path):
    import train_wav2vec2

    args = train_wav2vec2.make_parser().parse_args(["--model_dir", str(tmp_path)])
    assert args.model_save_path == str(tmp_path)
