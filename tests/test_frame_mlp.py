"""frame_mlp (models/frame_mlp.py) end to end as a user runs it: trained by train_cnn.py on the session's mel
images, it reads the held-out speakers' sex, its run card rebuilds it, and its ONNX export gives the same logits."""
import json

import pandas as pd
import pytest
import torch

from conftest import run_script
from models import load_trained_model
from models.frame_mlp import SHAPE_SCALE, FrameMLP, band_edges
from models.hyperparameters import FrameArgs
from toolkit.errors import ToolkitError


@pytest.mark.parametrize("vote_bound, bands", [(0.0, 1), (FrameArgs.vote_bound, FrameArgs.bands)])
def test_frame_mlp_trains_on_mel_images_and_exports(sex_data, tmp_path, vote_bound, bands):
    models = tmp_path / "models"
    own = [] if (vote_bound, bands) == (FrameArgs.vote_bound, FrameArgs.bands) else \
        ["--vote_bound", str(vote_bound), "--bands", str(bands)]
    run_script("train_cnn.py", "--csv_load_path", sex_data, "--category", "sex", "--model", "frame_mlp",
               "--epochs", "8", "--batch_size", "16", "--model_save_path", models, *own, in_process=True)
    card = json.loads((models / "frame_mlp_sex.json").read_text())
    assert card["model"] == "frame_mlp"
    assert card["model_args"] == {"hidden": 256, "layers": 2, "dropout": 0.2, "vote_bound": vote_bound, "bands": bands}
    assert card["training"]["recipe"] == "frame_mlp" and card["training"]["freq_masks"] == 0
    test = pd.read_csv(models / "frame_mlp_sex_test_predictions.csv")
    assert (test["sex"] == test["predicted"]).mean() >= 0.75  # 2 held-out speakers, chance 0.5

    out = tmp_path / "onnx"
    proc = run_script("export_onnx.py", "--model_dir", models, "--model_file", "frame_mlp_sex.pt", "--out", out,
                      "--check_clips", "8", in_process=True)
    assert "onnxruntime reproduces the torch logits within 0.0001" in proc.stdout
    assert (out / "model.onnx").is_file()

    # a card written before the flags: its model was trained unbounded, on whole frames (only the one-band model's
    # weights fit that network)
    del card["model_args"]["vote_bound"]
    if bands == 1:
        del card["model_args"]["bands"]
    (models / "frame_mlp_sex.json").write_text(json.dumps(card))
    model, _ = load_trained_model(str(models / "frame_mlp_sex.pt"))
    assert model.vote_bound == 0.0 and len(model.bands) == bands


def test_bounded_votes_are_the_mean_of_each_frames_squashed_logits():
    """--vote_bound B: the clip's logits are the mean over the loud frames of B tanh(frame logits / B), so no frame
    moves them by more than B / frames; unbounded, they are the frames' mean logits (the classifier of the mean hidden
    state), and one extreme frame can decide the clip."""
    torch.manual_seed(0)
    unbounded = FrameMLP(2, 40, FrameArgs(vote_bound=0.0, bands=1)).eval()
    bounded = FrameMLP(2, 40, FrameArgs(vote_bound=2.0, bands=1)).eval()
    bounded.load_state_dict(unbounded.state_dict())  # the same weights: a bound adds none
    x = torch.rand(3, 1, 40, 30) * 0.5 + 0.5  # loud frames everywhere
    shape = ((x.mean(1) - x.mean(1).mean(1, keepdim=True)) * SHAPE_SCALE).transpose(1, 2)
    frames = unbounded.classifier(unbounded.bands[0](shape))  # (3, 30, 2) per-frame logits
    torch.testing.assert_close(unbounded(x), frames.mean(1))
    torch.testing.assert_close(bounded(x), (2.0 * torch.tanh(frames / 2.0)).mean(1))
    assert bounded(x).abs().max() <= 2.0


def test_sub_band_experts_each_vote_on_their_own_band():
    """--bands K: K half-overlapping bands cover the frame; each band's own hidden layers read its shape (its mean
    taken out), the shared classifier gives its logits, and a frame's vote is the sum of the K bounded votes, so no
    band moves a frame by more than B, and agreeing bands add up."""
    assert band_edges(40, 1) == [(0, 40)]
    assert band_edges(40, 4) == [(0, 16), (8, 24), (16, 32), (24, 40)]
    assert band_edges(41, 3) == [(0, 20), (10, 30), (20, 41)]
    with pytest.raises(ToolkitError, match=r"^frame_mlp --bands 8: the images have 8 rows, too few for 8 bands of 2 "
                                           r"rows or more; use --bands 7 or fewer$"):
        band_edges(8, 8)
    torch.manual_seed(0)
    model = FrameMLP(2, 40, FrameArgs(vote_bound=2.0, bands=4)).eval()
    x = torch.rand(3, 1, 40, 30) * 0.5 + 0.5
    shape = ((x.mean(1) - x.mean(1).mean(1, keepdim=True)) * SHAPE_SCALE).transpose(1, 2)
    votes = []
    for (start, stop), layers in zip(band_edges(40, 4), model.bands):
        band = shape[..., start:stop]
        votes.append(2.0 * torch.tanh(model.classifier(layers(band - band.mean(-1, keepdim=True))) / 2.0))
    torch.testing.assert_close(model(x), torch.stack(votes).sum(0).mean(1))
    assert model(x).abs().max() <= 4 * 2.0
    with pytest.raises(RuntimeError, match="size mismatch"):  # a card must name the bands its weights have
        FrameMLP(2, 40, FrameArgs(bands=3)).load_state_dict(model.state_dict())


def test_weights_saved_before_bands_load_as_the_one_band():
    """A state dict from before --bands held one VectorHead, `head`: it loads as band 0 and the classifier, and the
    model gives the logits it gave."""
    torch.manual_seed(0)
    model = FrameMLP(2, 40, FrameArgs(bands=1)).eval()
    old = {("head.hidden." + k[len("bands.0."):] if k.startswith("bands.0.") else "head." + k): v
           for k, v in model.state_dict().items()}
    assert sorted(old) == ["head.classifier.bias", "head.classifier.weight", "head.hidden.0.bias",
                           "head.hidden.0.weight", "head.hidden.3.bias", "head.hidden.3.weight"]
    again = FrameMLP(2, 40, FrameArgs(bands=1)).eval()
    again.load_state_dict(old)
    x = torch.rand(2, 1, 40, 12)
    torch.testing.assert_close(again(x), model(x))
