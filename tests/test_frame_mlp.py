"""frame_mlp (models/frame_mlp.py) end to end as a user runs it: trained by train_cnn.py on the session's mel
images, it reads the held-out speakers' sex, its run card rebuilds it, and its ONNX export gives the same logits."""
import json

import pandas as pd
import pytest
import torch

from conftest import run_script
from models import load_trained_model
from models.frame_mlp import SHAPE_SCALE, FrameMLP
from models.hyperparameters import FrameArgs


@pytest.mark.parametrize("vote_bound", [0.0, 5.0])
def test_frame_mlp_trains_on_mel_images_and_exports(sex_data, tmp_path, vote_bound):
    models = tmp_path / "models"
    run_script("train_cnn.py", "--csv_load_path", sex_data, "--category", "sex", "--model", "frame_mlp",
               "--epochs", "8", "--batch_size", "16", "--model_save_path", models,
               *([] if vote_bound == FrameArgs.vote_bound else ["--vote_bound", str(vote_bound)]), in_process=True)
    card = json.loads((models / "frame_mlp_sex.json").read_text())
    assert card["model"] == "frame_mlp"
    assert card["model_args"] == {"hidden": 256, "layers": 2, "dropout": 0.2, "vote_bound": vote_bound}
    assert card["training"]["recipe"] == "frame_mlp" and card["training"]["freq_masks"] == 0
    test = pd.read_csv(models / "frame_mlp_sex_test_predictions.csv")
    assert (test["sex"] == test["predicted"]).mean() >= 0.75  # 2 held-out speakers, chance 0.5

    out = tmp_path / "onnx"
    proc = run_script("export_onnx.py", "--model_dir", models, "--model_file", "frame_mlp_sex.pt", "--out", out,
                      "--check_clips", "8", in_process=True)
    assert "onnxruntime reproduces the torch logits within 0.0001" in proc.stdout
    assert (out / "model.onnx").is_file()

    del card["model_args"]["vote_bound"]  # a card written before the flag: its model was trained unbounded
    (models / "frame_mlp_sex.json").write_text(json.dumps(card))
    model, _ = load_trained_model(str(models / "frame_mlp_sex.pt"))
    assert model.vote_bound == 0.0


def test_bounded_votes_are_the_mean_of_each_frames_squashed_logits():
    """--vote_bound B: the clip's logits are the mean over the loud frames of B tanh(frame logits / B), so no frame
    moves them by more than B / frames; unbounded, they are the frames' mean logits (the classifier of the mean hidden
    state), and one extreme frame can decide the clip."""
    torch.manual_seed(0)
    unbounded = FrameMLP(2, 40, FrameArgs(vote_bound=0.0)).eval()
    bounded = FrameMLP(2, 40, FrameArgs(vote_bound=2.0)).eval()
    bounded.load_state_dict(unbounded.state_dict())  # the same weights: a bound adds none
    x = torch.rand(3, 1, 40, 30) * 0.5 + 0.5  # loud frames everywhere
    head = unbounded.head
    shape = ((x.mean(1) - x.mean(1).mean(1, keepdim=True)) * SHAPE_SCALE).transpose(1, 2)
    frames = head.classifier(head.hidden(shape))  # (3, 30, 2) per-frame logits
    torch.testing.assert_close(unbounded(x), frames.mean(1))
    torch.testing.assert_close(bounded(x), (2.0 * torch.tanh(frames / 2.0)).mean(1))
    assert bounded(x).abs().max() <= 2.0
