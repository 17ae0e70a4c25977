"""One set-up for the training stages: one flag vocabulary (--data_dir, --model_dir; the seed's names as aliases)
and --config RUN_CARD.json, which re-runs a run from its card (flags typed override the card's values)."""
import importlib
import json

import pytest

from conftest import run_script
from toolkit.training import setup

TRAINING_SCRIPTS = {  # script: the seed's names of its folder flags
    "train_cnn": ("--csv_load_path", "--model_save_path"),
    "cnn_classifier": ("--csv_load_path", "--model_save_and_load_path", "--model_load_and_save_path"),
    "train_wav2vec2": ("--csv_load_path", "--model_save_path"),
    "pseudo_labeling_semisupervised": ("--csv_load_path", "--model_save_and_load_path", "--model_load_and_save_path"),
    "train_autoencoder": ("--csv_load_path", "--model_save_path"),
}


class Parsed(Exception):
    pass


def parsed(script: str, argv: list[str], monkeypatch):
    """The Namespace `script` sets up from `argv` (its main() stops there)."""
    module = importlib.import_module(script)

    def stop(parser, argv, name, **kwargs):
        raise Parsed(setup.parse(parser, argv, name))

    monkeypatch.setattr(module, "set_up", stop)
    with pytest.raises(Parsed) as caught:
        module.main(argv)
    return caught.value.args[0]


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
def test_every_training_script_takes_data_dir_model_dir_and_the_seeds_names(script, monkeypatch):
    args = parsed(script, ["--data_dir", "D/", "--model_dir", "M/"], monkeypatch)
    assert (args.data_dir, args.model_dir) == ("D/", "M/")
    data_alias, *model_aliases = TRAINING_SCRIPTS[script]
    for model_alias in model_aliases:
        args = parsed(script, [data_alias, "D2/", model_alias, "M2/"], monkeypatch)
        assert (args.data_dir, args.model_dir) == ("D2/", "M2/")


@pytest.mark.parametrize("script", TRAINING_SCRIPTS)
def test_a_prefix_is_never_taken_for_a_flag(script):
    proc = run_script(f"{script}.py", "--model_d", "M/", check=False, in_process=True)
    assert proc.returncode == 2 and "unrecognized arguments: --model_d M/; did you mean --model_dir?" in proc.stderr


@pytest.fixture(scope="module")
def mlp_run(egemaps_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mlp_run")
    run_script("train_cnn.py", "--data_dir", egemaps_data, "--category", "sex", "--model", "mlp", "--hidden", "32",
               "--C", "0.1", "1", "--threads", "1", "--model_dir", out, in_process=True)
    return out / "mlp_sex.json"


def test_config_reruns_a_run_from_its_card(mlp_run, tmp_path):
    proc = run_script("train_cnn.py", "--config", mlp_run, "--model_dir", tmp_path, "--threads", "1", in_process=True)
    assert f"re-running {mlp_run} with --model_dir {tmp_path}" in proc.stdout
    first, again = (json.loads(p.read_text()) for p in (mlp_run, tmp_path / "mlp_sex.json"))
    assert again["model_args"] == first["model_args"] == {"hidden": 32, "layers": 1, "dropout": 0.2}
    assert again["training"] == first["training"] and again["training"]["C"] == [0.1, 1.0]
    assert again["args"]["config"] == str(mlp_run)
    for split in ("val", "test"):
        for metric in ("accuracy", "f1", "loss"):
            assert again["metrics"][split][metric] == pytest.approx(first["metrics"][split][metric], abs=1e-4)


def test_flags_typed_with_config_override_the_cards_values(mlp_run, tmp_path):
    proc = run_script("train_cnn.py", "--config", mlp_run, "--model_dir", tmp_path, "--layers", "2", "--C", "1",
                      "--threads", "1", in_process=True)
    assert "--layers 2" in proc.stdout and "--C [1.0]" in proc.stdout
    card = json.loads((tmp_path / "mlp_sex.json").read_text())
    assert card["model_args"] == {"hidden": 32, "layers": 2, "dropout": 0.2} and card["training"]["C"] == [1.0]


def test_config_never_overwrites_the_run_it_reruns(mlp_run):
    before = mlp_run.read_bytes()
    proc = run_script("train_cnn.py", "--config", mlp_run, "--threads", "1", check=False, in_process=True)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: --config {mlp_run}: this re-run would overwrite the run it re-runs; pass another --model_dir")
    assert mlp_run.read_bytes() == before


def test_config_of_another_stages_run_names_the_script_to_use(mlp_run, tmp_path):
    proc = run_script("cnn_classifier.py", "--config", mlp_run, "--model_dir", tmp_path, check=False, in_process=True)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: --config {mlp_run}: the run card of a train_cnn.py run; re-run it with train_cnn.py --config {mlp_run}")


def test_config_names_a_missing_card(tmp_path):
    proc = run_script("train_cnn.py", "--config", tmp_path / "x.json", check=False, in_process=True)
    assert proc.returncode == 2 and f"{tmp_path / 'x.json'}: run card not found" in proc.stderr


def test_an_older_cards_flag_names_are_todays():
    from argparse import Namespace

    from toolkit.cli import split_csv

    old = Namespace(csv_load_path="Data/", category="sex", train_csv=None)  # a card written before --data_dir
    assert split_csv(old, "train") == "Data/sex_train.csv"
