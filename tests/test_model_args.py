"""A model's own hyperparameters (mlp --hidden/--layers/--dropout) are flags of train_cnn.py, recorded in the run
card's model_args and rebuilt from it by models.load_trained_model (predict.py, evaluate.py) without code; cards
written before model_args load with today's defaults."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import predict
from conftest import run_script
from models import build_model, load_trained_model, model_args_of
from toolkit.errors import ToolkitError
from toolkit.io.labels import CLASSES


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [tuple(m.weight.shape) for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.fixture(scope="module")
def wide_mlp(egemaps_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("wide_mlp")
    run_script("train_cnn.py", "--data_dir", egemaps_data, "--category", "sex", "--model", "mlp", "--hidden", "48",
               "--layers", "2", "--C", "1", "--threads", "1", "--model_dir", out, in_process=True)
    return out


def test_a_non_default_mlp_is_recorded_and_rebuilt_by_predict(wide_mlp, egemaps_data, tmp_path):
    card = json.loads((wide_mlp / "mlp_sex.json").read_text())
    assert card["model_args"] == {"hidden": 48, "layers": 2, "dropout": 0.2}
    model, loaded = load_trained_model(str(wide_mlp / "mlp_sex.pt"))
    assert linear_shapes(model) == [(48, 88), (48, 48), (2, 48)] and loaded.model_args == card["model_args"]

    # predict.py's probabilities are the ones training's evaluation wrote for the test clips
    evaluated = pd.read_csv(wide_mlp / "mlp_sex_test_predictions.csv")
    clips = [str((egemaps_data / p).resolve()) for p in evaluated["Audio_file_path"]]
    predict.main(["--model_dir", str(wide_mlp), "--model_file", "mlp_sex.pt", *clips, "--out", str(tmp_path / "p.csv"),
                  "--device", "cpu"])
    predicted = pd.read_csv(tmp_path / "p.csv").set_index("file").loc[clips]
    columns = [f"p_{c}" for c in CLASSES["sex"]]
    assert np.allclose(predicted[columns].to_numpy(), evaluated[columns].to_numpy(), atol=1e-5)


def test_a_card_without_model_args_rebuilds_todays_default_mlp(mlp_model, tmp_path):
    card = json.loads((mlp_model / "mlp_sex.json").read_text())
    assert card["model_args"] == {"hidden": 256, "layers": 1, "dropout": 0.2}
    del card["model_args"]  # as written before the card had model_args
    (tmp_path / "mlp_sex.json").write_text(json.dumps(card))
    (tmp_path / "mlp_sex.pt").write_bytes((mlp_model / "mlp_sex.pt").read_bytes())
    model, loaded = load_trained_model(str(tmp_path / "mlp_sex.pt"))
    assert linear_shapes(model) == [(256, 88), (2, 256)] and loaded.model_args == {}


def test_a_card_lacking_a_later_field_gets_the_value_its_model_was_trained_with():
    import argparse

    before = {"hidden": 256, "layers": 2, "dropout": 0.2}  # a frame_mlp card written before --vote_bound
    assert model_args_of("frame_mlp", before)["vote_bound"] == 0.0  # unbounded, as it was trained
    assert model_args_of("frame_mlp", {})["vote_bound"] == 5.0  # no card: today's default
    assert model_args_of("frame_mlp", {**before, "vote_bound": 3.0})["vote_bound"] == 3.0
    rerun = argparse.Namespace(config="old.json", **before)  # --config old.json: the card's flags as defaults
    assert model_args_of("frame_mlp", rerun)["vote_bound"] == 0.0
    assert model_args_of("frame_mlp", argparse.Namespace(config=None, hidden=128))["vote_bound"] == 5.0
    assert model_args_of("frame_mlp", before)["bands"] == 1  # one MLP on the whole frame
    assert model_args_of("frame_mlp", {})["bands"] == 4


def test_defaults_are_todays_fixed_mlp():
    assert model_args_of("mlp", {}) == {"hidden": 256, "layers": 1, "dropout": 0.2}
    assert model_args_of("linear", {}) == {}
    assert linear_shapes(build_model("mlp", 3, (88,))) == [(256, 88), (3, 256)]


@pytest.mark.parametrize("model, given, message", [
    ("linear", {"hidden": 8}, "--hidden: not a hyperparameter of linear (it has none); drop it or choose another --model"),
    ("mlp", {"width": 8}, "--width: not a hyperparameter of mlp (its own are --hidden, --layers, --dropout)"),
    ("mlp", {"layers": 0}, "--layers 0: must be a whole number from 1 to 64, got 0"),
    ("mlp", {"hidden": "many"}, "--hidden 'many': must be a whole number from 1 to 65536, got 'many'"),
])
def test_model_args_a_model_lacks_or_cannot_take_are_one_line_errors(model, given, message):
    with pytest.raises(ToolkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_model(model, 2, (88,), model_args=given)


def test_a_flag_of_another_model_is_refused_before_any_data_is_read(tmp_path):
    proc = run_script("train_cnn.py", "--data_dir", tmp_path / "nowhere", "--model", "linear", "--hidden", "8",
                      check=False, in_process=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --hidden: not a hyperparameter of linear (it has none); drop it or choose another --model"


def test_a_hand_edited_model_args_is_a_one_line_error_naming_the_card(wide_mlp, tmp_path):
    card = json.loads((wide_mlp / "mlp_sex.json").read_text())
    card["model_args"]["hidden"] = 64  # the weights are 48 wide
    (tmp_path / "mlp_sex.json").write_text(json.dumps(card))
    (tmp_path / "mlp_sex.pt").write_bytes((wide_mlp / "mlp_sex.pt").read_bytes())
    with pytest.raises(ToolkitError, match="mlp_sex.pt"):
        load_trained_model(str(tmp_path / "mlp_sex.pt"))
    assert torch.load(wide_mlp / "mlp_sex.pt", weights_only=True)["hidden.0.weight"].shape == (48, 88)
