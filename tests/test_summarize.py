"""summarize_runs.py (the results table) and scripts/sweep.sh (categories × models, then the table)."""
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import summarize_runs
from toolkit.runcard import RunCard
from conftest import ROOT, run_script


@pytest.fixture(scope="module")
def two_runs(trained_cnn3, sex_data, tmp_path_factory):
    """RUNS_DIR with two finished runs: the session's 2-epoch cnn3 and a 1-epoch cnn3 with the seed's recipe."""
    runs = tmp_path_factory.mktemp("runs")
    shutil.copytree(trained_cnn3, runs / "a")
    run_script("train_cnn.py", "--csv_load_path", sex_data, "--category", "sex", "--model", "cnn3", "--epochs", "1",
               "--batch_size", "16", "--recipe", "seed", "--threads", "1", "--model_save_path", runs / "b" / "seed",
               in_process=True)
    return runs


def test_two_runs_give_a_two_row_table_with_their_values(two_runs):
    proc = run_script("summarize_runs.py", two_runs, in_process=True)
    table = pd.read_csv(two_runs / "runs_summary.csv")
    assert list(table.columns) == summarize_runs.COLUMNS and len(table) == 2
    assert list(table["run"]) == ["a/cnn3_sex", "b/seed/cnn3_sex"]
    for row in table.to_dict("records"):
        saved = json.loads((two_runs / f"{row['run']}_metrics.json").read_text())
        assert (row["category"], row["model"], row["features"], row["pre-training"], row["split"]) == (
            "sex", "cnn3", "mel", "none", "speaker")
        assert row["recipe"] == saved["training"]["recipe"]
        assert row["epochs"] == len(saved["history"]) and row["best epoch"] == saved["metrics"]["epoch"]
        for column, key in (("test accuracy", "accuracy"), ("weighted F1", "f1"), ("precision", "precision"), ("recall", "recall")):
            assert row[column] == pytest.approx(saved["metrics"]["test"][key], abs=1e-4)
        assert row["seconds"] == pytest.approx(saved["metrics"]["seconds"], abs=1e-3)
    assert list(table["epochs"]) == [2, 1] and table["recipe"][1] == "seed"
    # markdown: header, separator, one line per run
    lines = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert len(lines) == 4 and lines[0].startswith("| category | model | features | pre-training | split | recipe | epochs")
    assert (two_runs / "runs_f1.png").read_bytes()[:4] == b"\x89PNG"


def legacy_card(**entries) -> RunCard:
    """A run card converted from the JSON sidecar of the version before run cards (no schema)."""
    sidecar = json.loads((ROOT / "tests" / "fixtures" / "legacy_cnn3_sex.json").read_text())
    return RunCard.from_dict({**sidecar, **entries}, "legacy.json")


def test_pretraining_and_split_are_read_off_the_run(sex_data, tmp_path):
    assert legacy_card(pretrained=False).pretraining() == "none"
    assert legacy_card(pretrained=True).pretraining() == "imagenet"
    assert legacy_card(encoder_file="/m/encoder_3_layers.pt").pretraining() == "autoencoder"
    assert legacy_card(pretrained=True, pseudo_labeling={"T1": 100}).pretraining() == "imagenet + pseudo-label"
    # legacy cards do not know their split: it is measured from the CSVs their command line names
    args = {"csv_load_path": str(sex_data), "category": "sex", "train_csv": None, "test_csv": None}
    assert summarize_runs.split_kind(legacy_card(args=args, train_csv=None)) == "speaker"
    # the seed's random split: the same speakers in train and test
    mixed = pd.concat([pd.read_csv(sex_data / "sex_train.csv"), pd.read_csv(sex_data / "sex_test.csv")])
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    assert summarize_runs.split_kind(legacy_card(args={**args, "train_csv": str(tmp_path / "mixed.csv")}, train_csv=None)) == "random"
    assert summarize_runs.split_kind(legacy_card(args={**args, "csv_load_path": str(tmp_path / "gone")}, train_csv=None)) == "?"
    # a card of today names the split stage 2 made
    assert summarize_runs.split_kind(RunCard.from_dict({**legacy_card().to_dict(), "split": {"kind": "random"}}, "c")) == "random"


def test_no_runs_is_a_one_line_error(tmp_path):
    (tmp_path / "notes_metrics.json").write_text("{not json")
    proc = run_script("summarize_runs.py", tmp_path, check=False, in_process=True)
    assert proc.returncode == 2 and "no finished training run found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "notes_metrics.json" in proc.stdout


def test_sweep_script_runs_one_category_one_model_one_epoch(tiny_corpus, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "CORPUS": str(tiny_corpus), "DATA": str(tmp_path / "data"),
           "RUNS": str(tmp_path / "runs"), "CATEGORIES": "emotion", "MODELS": "cnn3", "EPOCHS": "1",
           "SPEC_FLAGS": "--workers 1", "TRAIN_FLAGS": "--threads 1 --batch_size 16"}
    sweep = [ "bash", str(ROOT / "scripts" / "sweep.sh")]
    proc = subprocess.run(sweep, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "runs" / "emotion" / "cnn3" / "cnn3_emotion.pt").is_file()
    table = pd.read_csv(tmp_path / "runs" / "runs_summary.csv")
    assert len(table) == 1 and table.loc[0, "category"] == "emotion" and table.loc[0, "epochs"] == 1
    # a second sweep skips the finished run
    again = subprocess.run(sweep, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "already done" in again.stdout


def test_output_piped_into_a_closed_reader_is_not_an_error():
    """`summarize_runs.py RUNS | head -1`: when the reader leaves early the stage exits 0 without an error line."""
    code = "from toolkit.cli import run_main\ndef main():\n    raise BrokenPipeError(32, 'Broken pipe')\nrun_main(main)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
