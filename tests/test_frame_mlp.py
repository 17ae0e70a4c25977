"""frame_mlp (models/frame_mlp.py) end to end as a user runs it: trained by train_cnn.py on the session's mel
images, it reads the held-out speakers' sex, its run card rebuilds it, and its ONNX export gives the same logits."""
import json

import pandas as pd

from conftest import run_script


def test_frame_mlp_trains_on_mel_images_and_exports(sex_data, tmp_path):
    models = tmp_path / "models"
    run_script("train_cnn.py", "--csv_load_path", sex_data, "--category", "sex", "--model", "frame_mlp",
               "--epochs", "8", "--batch_size", "16", "--model_save_path", models, in_process=True)
    card = json.loads((models / "frame_mlp_sex.json").read_text())
    assert card["model"] == "frame_mlp" and card["model_args"] == {"hidden": 256, "layers": 2, "dropout": 0.2}
    assert card["training"]["recipe"] == "frame_mlp" and card["training"]["freq_masks"] == 0
    test = pd.read_csv(models / "frame_mlp_sex_test_predictions.csv")
    assert (test["sex"] == test["predicted"]).mean() >= 0.75  # 2 held-out speakers, chance 0.5

    out = tmp_path / "onnx"
    proc = run_script("export_onnx.py", "--model_dir", models, "--model_file", "frame_mlp_sex.pt", "--out", out,
                      "--check_clips", "8", in_process=True)
    assert "onnxruntime reproduces the torch logits within 0.0001" in proc.stdout
    assert (out / "model.onnx").is_file()
