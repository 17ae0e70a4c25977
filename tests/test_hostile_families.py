"""Issue 26's hostile inputs, one table per family (docs/robustness.md): every case as a user (or an attacker) gives
it, each asserting exit status 2, one line naming the file or flag, no traceback and nothing written. Stages run
in-process through the run_main wrapper their scripts use (test_hostile_input.run_stage)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from test_hostile_input import one_line_error, run_stage
from toolkit.fileio import resolve_from_csv

SPLITS = ("train", "val", "test")
NAN = float("nan")


def first_clip(sex_data: Path) -> Path:
    return sorted((sex_data / "AudioWAV").iterdir())[0]


# ------------------------------------------------------------------ family 1: files the toolkit wrote, read back

def set_in(d: dict, dotted: str, value) -> dict:
    """A deep copy of `d` with the entry at 'a.b.c' set to `value`."""
    d = json.loads(json.dumps(d))
    *parents, last = dotted.split(".")
    inner = d
    for key in parents:
        inner = inner[key]
    inner[last] = value
    return d


@pytest.mark.parametrize("field, value, message", [
    ("features.params", [1, 2], "field 'features.params' input should be a valid dictionary (got [1, 2])"),
    ("features", "mel", "field 'features' input should be a valid dictionary"),
    ("category", ["sex"], "field 'category' input should be a valid string"),
    ("model", 3, "field 'model' input should be a valid string (got 3)"),
    ("classes", [0, 1], "field 'classes.0' input should be a valid string (got 0)"),
    ("classes", "Male,Female", "field 'classes' input should be a valid list"),
    ("init_detail", [], "field 'init_detail' input should be a valid dictionary"),
    ("init", "scratch", "field 'init' input should be a valid list"),
    ("metrics", [], "field 'metrics' input should be a valid dictionary"),
    ("metrics.test", {"f1": NAN}, "field 'metrics' holds a number that is not finite (nan)"),
    ("split", "x", "field 'split' input should be a valid dictionary"),
    ("calibration", {"method": "temperature", "temperature": 1e-300}, "field 'calibration.temperature' input should be greater than or equal to 0.01"),
    ("calibration", {"temperature": NAN}, "field 'calibration.temperature' input should be a finite number"),
    ("calibration", {"temperature": "1"}, "field 'calibration.temperature' input should be a valid number"),
    ("calibration", [1.0], "field 'calibration' input should be a valid dictionary"),
    ("input.shape", [3, 0, 128], "field 'input.shape.1' input should be greater than or equal to 1"),
    ("input.shape", [], "field 'input.shape' list should have at least 1 item"),
    ("features.params.n_fft", "1536", "features.params: field 'n_fft' input should be a valid integer (got '1536')"),
    ("features.params.n_fft", True, "features.params: field 'n_fft' input should be a valid integer (got True)"),
    ("features.params.top_db", NAN, "features.params: field 'top_db' input should be a finite number"),
    ("features.params.sr", 16000.5, "features.params: field 'sr' input should be a valid integer"),
    ("schema", True, "run card schema True is not a version number"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 25 else None)
def test_a_run_card_that_breaks_its_schema_is_one_line_naming_the_field(trained_cnn3, sex_data, tmp_path, capsys,
                                                                          field, value, message):
    shutil.copy(trained_cnn3 / "cnn3_sex.pt", tmp_path / "m.pt")
    card = json.loads((trained_cnn3 / "cnn3_sex.json").read_text())
    card.setdefault("calibration", None)
    (tmp_path / "m.json").write_text(json.dumps(set_in(card, field, value)))
    code, out, err = run_stage("predict.py", "--model_file", tmp_path / "m.pt", first_clip(sex_data),
                               "--out", tmp_path / "p.csv", capsys=capsys)
    one_line_error(code, err, "m.json: ", message)
    assert not (tmp_path / "p.csv").exists() and "nan" not in out.lower()


@pytest.mark.parametrize("field, value", [("classes", [0, 1]), ("init_detail", []), ("metrics", []), ("split", "x"),
                                          ("init_detail", {"encoder": "x"})])
def test_the_web_demo_leaves_out_a_model_whose_card_breaks_its_schema(trained_cnn3, tmp_path, capsys, field, value):
    """app.py at start-up: the broken model is named with its field (one warning), and with no other model to serve
    the demo stops with one error line (before Gradio is imported)."""
    shutil.copy(trained_cnn3 / "cnn3_sex.pt", tmp_path)
    card = json.loads((trained_cnn3 / "cnn3_sex.json").read_text())
    (tmp_path / "cnn3_sex.json").write_text(json.dumps(set_in(card, field, value)))
    code, out, err = run_stage("app.py", "--model_dir", tmp_path, "--port", "7999", capsys=capsys)
    one_line_error(code, err, f"{tmp_path}: no trained classifier found")
    warning, _ = err.strip().splitlines()
    assert warning.startswith(f"warning: {tmp_path / 'cnn3_sex.pt'}: left out ({tmp_path / 'cnn3_sex.json'}: run card: "
                              f"field '{field}") and out == ""


FINETUNE = ["--category", "sex", "--epochs", "1", "--batch_size", "8", "--learning_rate", "1e-3", "--max_seconds", "2",
            "--threads", "1"]


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> str:
    from demo.encoder import save_demo_encoder

    return save_demo_encoder(str(tmp_path_factory.mktemp("encoder") / "tiny_wav2vec2"))


@pytest.fixture(scope="module")
def finetuned(sex_data, tiny_encoder, tmp_path_factory) -> Path:
    from conftest import run_script

    models = tmp_path_factory.mktemp("finetuned")
    run_script("train_wav2vec2.py", "--csv_load_path", sex_data, "--encoder", tiny_encoder, *FINETUNE,
               "--model_save_path", models, in_process=True)
    return models


ENCODER = "init_detail.encoder"
HUGE = {"hidden_size": 16384, "num_hidden_layers": 48, "num_attention_heads": 16}


@pytest.mark.parametrize("changes, message", [
    ({f"{ENCODER}.window": 0}, f"field '{ENCODER}.window' input should be greater than or equal to 1 (got 0)"),
    ({f"{ENCODER}.window": -5}, f"field '{ENCODER}.window' input should be greater than or equal to 1 (got -5)"),
    ({f"{ENCODER}.window": "32000"}, f"field '{ENCODER}.window' input should be a valid integer (got '32000')"),
    ({f"{ENCODER}.window": 10}, f"field '{ENCODER}.window' is 10 samples, shorter than the encoder's front end (400)"),
    ({f"{ENCODER}.sr": 16000.0}, f"field '{ENCODER}.sr' input should be a valid integer"),
    ({f"{ENCODER}.config.conv_stride": [0, 2, 2, 2, 2, 2, 2]},
     f"field '{ENCODER}.config.conv_stride.0' input should be greater than or equal to 1 (got 0)"),
    ({f"{ENCODER}.config.conv_kernel": [10, 3]}, "conv_kernel, conv_stride and conv_dim have 2, 7 and 7 entries"),
    ({f"{ENCODER}.config.{k}": v for k, v in HUGE.items()}, "hidden_size 16384 × num_hidden_layers 48 (intermediate_size "
                                                            "128) is a network of 193 GiB of float32 weights, more than"),
    ({f"{ENCODER}.config.num_attention_heads": 3}, "hidden_size 32 is not a multiple of num_attention_heads 3"),
    ({ENCODER: None}, "wav2vec2 is a fine-tuned speech encoder: its run card must describe the encoder"),
], ids=["window 0", "window -5", "window text", "window under the front end", "float rate", "stride 0", "kernel list",
        "16384 x 48 layers", "heads", "no encoder"])
def test_a_fine_tuned_speech_models_card_that_breaks_its_schema_is_one_line(finetuned, sex_data, tmp_path, capsys,
                                                                           changes, message):
    for name in ("wav2vec2_sex.pt", "wav2vec2_sex.json"):
        shutil.copy(finetuned / name, tmp_path / name)
    card = json.loads((tmp_path / "wav2vec2_sex.json").read_text())
    for field, value in changes.items():
        card = set_in(card, field, value)
    (tmp_path / "wav2vec2_sex.json").write_text(json.dumps(card))
    code, out, err = run_stage("predict.py", "--model_file", tmp_path / "wav2vec2_sex.pt", first_clip(sex_data),
                               "--out", tmp_path / "p.csv", capsys=capsys)
    one_line_error(code, err, "wav2vec2_sex.json: ", message, "; restore the ")
    assert not (tmp_path / "p.csv").exists() and "nan" not in out.lower()


@pytest.mark.parametrize("changes, message", [
    ({"conv_stride": [0, 2, 2, 2, 2, 2, 2]}, "field 'conv_stride.0' input should be greater than or equal to 1 (got 0)"),
    (HUGE, "hidden_size 16384 × num_hidden_layers 48 (intermediate_size 128) is a network of 193 GiB"),
    ({"num_hidden_layers": 0}, "field 'num_hidden_layers' input should be greater than or equal to 1 (got 0)"),
    ({"num_attention_heads": 3}, "hidden_size 32 is not a multiple of num_attention_heads 3"),
], ids=["stride 0", "16384 x 48 layers", "no layers", "heads"])
@pytest.mark.parametrize("stage", ["stage 2", "train_wav2vec2.py"])
def test_an_encoder_config_that_breaks_its_schema_is_one_line_before_any_clip(sex_data, tiny_encoder, tmp_path, capsys,
                                                                            changes, message, stage):
    encoder = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, encoder)
    config = json.loads((encoder / "config.json").read_text())
    (encoder / "config.json").write_text(json.dumps({**config, **changes}))
    out = tmp_path / "out"
    if stage == "stage 2":
        code, _, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", out,
                                 "--save_csv_path", out, "--features", "ssl", "--encoder", encoder, "--threads", "1",
                                 capsys=capsys)
    else:
        code, _, err = run_stage("train_wav2vec2.py", "--csv_load_path", sex_data, "--encoder", encoder, *FINETUNE,
                                 "--no-pretrained", "--model_save_path", out, capsys=capsys)
    one_line_error(code, err, f"{encoder / 'config.json'}: speech encoder config: {message}",
                   "; fix the file or get the encoder again")
    assert not out.exists() or not list(out.iterdir())  # train_wav2vec2.py checks its output folder first


def test_the_run_card_schema_follows_the_dataclass():
    """A field added to RunCard is validated without being listed again (issue 22 adds fields)."""
    from dataclasses import fields

    from toolkit.runcard import RunCard, card_schema

    schema = card_schema()
    assert {f.alias or name for name, f in schema.model_fields.items()} == {f.name for f in fields(RunCard)}


def split_copy(sex_data: Path, folder: Path, rename: str | None = None) -> Path:
    """sex_data's split CSVs (absolute feature paths) and its split manifest in `folder`; `rename` renames the
    category (its column and files) to an own-data category."""
    folder.mkdir(parents=True, exist_ok=True)
    category = rename or "sex"
    for s in SPLITS:
        table = pd.read_csv(sex_data / f"sex_{s}.csv")
        table = table.assign(Image_file_path=[resolve_from_csv(p, sex_data / "x.csv") for p in table["Image_file_path"]])
        table.rename(columns={"sex": category}).to_csv(folder / f"{category}_{s}.csv", index=False)
    manifest = json.loads((sex_data / "sex_split.json").read_text())
    manifest.update(category=category, csvs={s: f"{category}_{s}.csv" for s in SPLITS})
    (folder / f"{category}_split.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("rename, field, value, message", [
    (None, "classes", ["Female", "Male", "Other"], "are not CREMA-D's sex classes ['Male', 'Female'] in their order"),
    (None, "classes", ["Female", "Male"], "are not CREMA-D's sex classes"),
    (None, "classes", 2, "field 'classes' input should be a valid list (got 2)"),
    (None, "classes", ["Male", "Male"], "field 'classes' must list at least 2 distinct class names"),
    (None, "clips", {"train": -1}, "field 'clips.train' input should be greater than or equal to 0"),
    (None, "seed", "42", "field 'seed' input should be a valid integer"),
    (None, "fractions", {"test": NAN}, "field 'fractions.test' input should be a finite number"),
    (None, "category", "age", "split manifest of category 'age', not 'sex'"),
    ("voice", "classes", ["Female", "Male", "Other"], "class(es) ['Other'] of its class list have no clip in the training data"),
], ids=["phantom class", "other order", "int classes", "duplicated", "negative count", "text seed", "nan fraction",
        "other category", "own phantom class"])
def test_a_split_manifest_that_lies_is_one_line(sex_data, tmp_path, capsys, rename, field, value, message):
    data = split_copy(sex_data, tmp_path / "d", rename)
    category = rename or "sex"
    path = data / f"{category}_split.json"
    path.write_text(json.dumps(set_in(json.loads(path.read_text()), field, value)))
    code, _, err = run_stage("train_cnn.py", "--csv_load_path", data, "--category", category, "--epochs", "1",
                             "--model_save_path", tmp_path / "m", capsys=capsys)
    one_line_error(code, err, f"{category}_split.json: ", message)
    assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())


@pytest.mark.parametrize("field, value, message", [
    ("classes", 5, "field 'classes' input should be a valid list (got 5)"),
    ("classes", ["Male", "Male"], "field 'classes' must list at least 2 distinct class names"),
    ("classes", [1, 2], "field 'classes.0' input should be a valid string"),
    ("speaker_column", ["ActorID"], "field 'speaker_column' input should be a valid string"),
    ("category", None, "field 'category' input should be a valid string"),
], ids=["int classes", "duplicated classes", "numbers", "list speaker column", "no category"])
def test_a_label_manifest_that_breaks_its_schema_is_one_line_in_stage_2(sex_data, tmp_path, capsys, field, value, message):
    load = tmp_path / "load"
    load.mkdir()
    shutil.copy(sex_data / "sex_with_audio_path.csv", load)
    manifest = json.loads((sex_data / "sex_with_audio_path.json").read_text())
    (load / "sex_with_audio_path.json").write_text(json.dumps(set_in(manifest, field, value)))
    code, _, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", load, "--save_spec_path", tmp_path / "spec",
                             "--save_csv_path", tmp_path / "out", "--workers", "1", capsys=capsys)
    one_line_error(code, err, "sex_with_audio_path.json: stage-1 label manifest: ", message)
    assert not (tmp_path / "out").exists() and not (tmp_path / "spec").exists()


def swapped_features(data: Path, index: dict) -> None:
    """Two clips' features trade places in the data file (the index unchanged): each row now holds another clip's."""
    sizes = [int(np.prod(shape)) * np.dtype(index["dtype"]).itemsize for shape in index["shapes"]]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    a, b = next((i, j) for i in range(len(sizes)) for j in range(i + 1, len(sizes)) if index["shapes"][i] == index["shapes"][j])
    raw = bytearray(data.read_bytes())
    first, second = raw[offsets[a]:offsets[a + 1]], raw[offsets[b]:offsets[b + 1]]
    raw[offsets[a]:offsets[a + 1]], raw[offsets[b]:offsets[b + 1]] = second, first
    data.write_bytes(bytes(raw))


def flipped_byte(data: Path, index: dict) -> None:
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))


def other_dtype(index: dict) -> dict:
    return {**index, "dtype": "int8" if index["dtype"] == "uint8" else "float32" if index["dtype"] == "float16" else "uint8"}


def transposed_shape(index: dict) -> dict:
    index["shapes"][0] = index["shapes"][0][::-1]
    return index


@pytest.mark.parametrize("lie, in_data", [(swapped_features, True), (other_dtype, False), (transposed_shape, False),
                                          (flipped_byte, True)], ids=["features swapped", "dtype", "shape", "data changed"])
def test_a_store_that_lies_about_its_rows_stops_training(sex_data, tmp_path, capsys, lie, in_data):
    data = tmp_path / "d"
    data.mkdir()
    for s in SPLITS:  # the CSVs byte for byte (their SHA-1 is in the index) and their stores
        for suffix in (".csv", ".store.bin", ".store.json"):
            shutil.copy(sex_data / f"sex_{s}{suffix}", data)
    shutil.copytree(sex_data / "mel_spectrograms", data / "mel_spectrograms")
    index_path = data / "sex_train.store.json"
    index = json.loads(index_path.read_text())
    if in_data:
        lie(data / "sex_train.store.bin", index)
    else:
        index_path.write_text(json.dumps(lie(index)))
    code, _, err = run_stage("train_cnn.py", "--csv_load_path", data, "--epochs", "1", "--batch_size", "96",
                             "--model_save_path", tmp_path / "m", capsys=capsys)
    one_line_error(code, err, "sex_train.store.json: row ", "does not match its checksum")
    assert not (tmp_path / "m" / "cnn3_sex.pt").exists()


@pytest.mark.parametrize("field, value, message", [
    ("config", "x", "field 'config' input should be a valid dictionary"),
    ("config", {"learning_rate": "fast"}, "field 'config.learning_rate' input should be a valid number"),
    ("best_score", "high", "field 'best_score"),
    ("best_score", NAN, "its best score is NaN"),
    ("scheduler", [], "field 'scheduler' input should be a valid dictionary"),
    ("best_model", [], "field 'best_model' input should be a valid dictionary"),
    ("epoch", -1, "field 'epoch' input should be greater than or equal to 0"),
    ("history", "12345", "field 'history' input should be a valid list"),
    ("generator", [1, 2], "field 'generator'"),
], ids=["config text", "config field", "best score text", "best score nan", "scheduler", "best model", "epoch",
        "history text", "generator"])
def test_a_last_checkpoint_with_fields_of_the_wrong_type_is_one_line(sex_data, one_epoch_run, tmp_path, capsys,
                                                                   field, value, message):
    shutil.copytree(one_epoch_run, tmp_path, dirs_exist_ok=True)
    last = tmp_path / "cnn3_sex_last.pt"
    torch.save({**torch.load(last, weights_only=True), field: value}, last)
    before = (tmp_path / "cnn3_sex.pt").read_bytes()
    code, _, err = run_stage("train_cnn.py", "--csv_load_path", sex_data, "--model_save_path", tmp_path, "--batch_size",
                             "32", "--epochs", "2", "--resume", capsys=capsys)
    one_line_error(code, err, "cnn3_sex_last.pt: not a resumable checkpoint of a run", message)
    assert (tmp_path / "cnn3_sex.pt").read_bytes() == before


def test_resume_refuses_data_that_stage_2_split_again(sex_data, one_epoch_run, tmp_path, capsys):
    data = split_copy(sex_data, tmp_path / "d")
    run = tmp_path / "run"
    base = ["--csv_load_path", data, "--model_save_path", run, "--batch_size", "32"]
    code, _, err = run_stage("train_cnn.py", *base, "--epochs", "1", "--threads", "1", capsys=capsys)
    assert code == 0, err
    train, test = (pd.read_csv(data / f"sex_{s}.csv") for s in ("train", "test"))  # another split: two clips trade places
    pd.concat([train.iloc[1:], test.iloc[:1]]).to_csv(data / "sex_train.csv", index=False)
    pd.concat([test.iloc[1:], train.iloc[:1]]).to_csv(data / "sex_test.csv", index=False)
    code, _, err = run_stage("train_cnn.py", *base, "--epochs", "2", "--resume", capsys=capsys)
    one_line_error(code, err, "cnn3_sex_last.pt: --resume on other data than the interrupted run", "delete it")


# ------------------------------------------------------------------ family 2: numbers that are not numbers

TRAIN = ("train_cnn.py", "--model_save_path")
PSEUDO = ("pseudo_labeling_semisupervised.py", "--model_save_and_load_path")
WAV2VEC2 = ("train_wav2vec2.py", "--model_save_path")
STAGE2 = ("generate_mel_spectrograms.py", "--save_csv_path")
PREDICT = ("predict.py", "--out")


@pytest.mark.parametrize("stage, flags, message", [
    (TRAIN, ["--mixup", "nan"], "--mixup: must be a finite number from 0 to 100, got nan"),
    (TRAIN, ["--mixup", "-1"], "--mixup: must be a finite number from 0 to 100, got -1"),
    (TRAIN, ["--gain_db", "nan"], "--gain_db: must be a finite number from 0 to 60, got nan"),
    (TRAIN, ["--gain_db", "inf"], "--gain_db: must be a finite number from 0 to 60, got inf"),
    (TRAIN, ["--weight_decay", "nan"], "--weight_decay: must be a finite number from 0 to 10, got nan"),
    (TRAIN, ["--warmup", "nan"], "--warmup: must be a finite number from 0 to 1, got nan"),
    (TRAIN, ["--warmup", "inf"], "--warmup: must be a finite number from 0 to 1, got inf"),
    (TRAIN, ["--seed", "99999999999"], "--seed: must be a whole number from 0 to 4294967295, got 99999999999"),
    (TRAIN, ["--seed", "1e3"], "--seed: must be a whole number from 0 to 4294967295, got '1e3'"),
    (TRAIN, ["--learning_rate", "1e400"], "--learning_rate: must be a finite number above 0, got 1e400"),
    (TRAIN, ["--learning_rate", "abc"], "--learning_rate: must be a finite number above 0, got 'abc'"),
    (TRAIN, ["--epochs", "0"], "--epochs: must be a whole number from 1 to 100000, got 0"),
    (TRAIN, ["--batch_size", "1.5"], "--batch_size: must be a whole number from 1 to 65536, got '1.5'"),
    (TRAIN, ["--time_masks", "10000000"], "--time_masks: must be a whole number from 0 to 100, got 10000000"),
    (TRAIN, ["--frames", "200000"], "--frames: must be a whole number from 8 to 4096, got 200000"),
    (TRAIN, ["--patience", "-1"], "--patience: must be a whole number from 0 to 100000, got -1"),
    (TRAIN, ["--folds", "1"], "--folds: use 0 (one train/val/test run) or at least 2 folds, got 1"),
    (TRAIN, ["--folds", "nan"], "--folds: must be a whole number from 0 to 1000, got 'nan'"),
    (TRAIN, ["--threads", "0"], "--threads: must be a whole number from 1 to 1024, got 0"),
    (PSEUDO, ["--af", "nan"], "--af: must be a finite number from 0 to 100, got nan"),
    (PSEUDO, ["--af", "-1"], "--af: must be a finite number from 0 to 100, got -1"),
    (PSEUDO, ["--confidence_threshold", "2"], "--confidence_threshold: must be a finite number from 0 to 1, got 2"),
    (PSEUDO, ["--start_step", "-5"], "--start_step: must be a whole number at least 0, got -5"),
    (WAV2VEC2, ["--warmup", "nan"], "--warmup: must be a finite number from 0 to 1, got nan"),
    (WAV2VEC2, ["--warmup", "inf"], "--warmup: must be a finite number from 0 to 1, got inf"),
    (WAV2VEC2, ["--weight_decay", "nan"], "--weight_decay: must be a finite number from 0 to 10, got nan"),
    (WAV2VEC2, ["--seed", "99999999999"], "--seed: must be a whole number from 0 to 4294967295, got 99999999999"),
    (WAV2VEC2, ["--max_seconds", "inf"], "--max_seconds: must be a finite number at least 0.5, got inf"),
    (WAV2VEC2, ["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps: must be a whole number at least 1"),
    (STAGE2, ["--val_fraction", "1"], "--val_fraction: must be a finite number above 0 and below 1, got 1"),
    (STAGE2, ["--test_fraction", "nan"], "--test_fraction: must be a finite number above 0 and below 1, got nan"),
    (STAGE2, ["--max_seconds", "nan"], "--max_seconds: must be a finite number above 0, got nan"),
    (STAGE2, ["--workers", "0"], "--workers: must be a whole number from 1 to 1024, got 0"),
    (STAGE2, ["--seed", "99999999999"], "--seed: must be a whole number from 0 to 4294967295, got 99999999999"),
    (STAGE2, ["--n_fft", "nan"], "--n_fft: must be a whole number at least 1, got 'nan'"),
    (PREDICT, ["--window_hop", "nan"], "--window_hop: must be a finite number above 0, got nan"),
    (PREDICT, ["--skip_quiet_windows", "inf"], "--skip_quiet_windows: must be a finite number above 0 and at most 200"),
    (("app.py", "--model_dir"), ["--port", "70000"], "--port: must be a whole number from 1 to 65535, got 70000"),
    (("app.py", "--model_dir"), ["--max_seconds=-inf"], "--max_seconds: must be a finite number above 0, got -inf"),
    (("make_demo_data.py", "--out"), ["--actors", "0"], "--actors: must be a whole number from 1 to 10000, got 0"),
    (("make_demo_encoder.py", "--out"), ["--layers", "16384"], "--layers: must be a whole number from 1 to 48, got 16384"),
    (("testing_autoencoder.py", "--model_load_path"), ["--learning_rate", "nan"], "--learning_rate: must be a finite number above 0"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_every_numeric_flag_is_a_finite_number_in_range(tmp_path, capsys, stage, flags, message):
    script, output_flag = stage
    code, _, err = run_stage(script, output_flag, tmp_path / "out", *flags, capsys=capsys)
    one_line_error(code, err, "error: argument " + message)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc': not a whole number; these are set by torchrun"),
    ({"RANK": "-1"}, "RANK='-1': not a whole number"),
    ({"MASTER_ADDR": None}, "MASTER_ADDR not set: WORLD_SIZE=2 asks for several processes"),
    ({"MASTER_PORT": "http"}, "MASTER_PORT='http': not a whole number"),
    ({"RANK": "5"}, "RANK=5 is not below WORLD_SIZE=2"),
], ids=["world size text", "negative rank", "no master address", "text port", "rank too high"])
def test_a_broken_torchrun_environment_is_one_line(sex_data, tmp_path, capsys, monkeypatch, env, message):
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29500", **env}.items():
        monkeypatch.delenv(key, raising=False) if value is None else monkeypatch.setenv(key, value)
    code, _, err = run_stage("train_cnn.py", "--csv_load_path", sex_data, "--epochs", "1", "--model_save_path", tmp_path / "m",
                             capsys=capsys)
    one_line_error(code, err, message)
    assert not (tmp_path / "m" / "cnn3_sex.pt").exists()


def test_a_finite_but_exploding_loss_stops_training(sex_data, tmp_path, capsys):
    code, out, err = run_stage("train_cnn.py", "--csv_load_path", sex_data, "--epochs", "2", "--learning_rate", "1e6",
                               "--recipe", "seed", "--batch_size", "16", "--model_save_path", tmp_path, capsys=capsys)
    line = one_line_error(code, err, "training diverged in epoch 1 (training loss ", "lower --learning_rate (now 1e+06)")
    assert "nan" not in line and not (tmp_path / "cnn3_sex.pt").exists() and not (tmp_path / "cnn3_sex.json").exists()


# ------------------------------------------------------------------ family 3: no non-finite probability or metric

def test_predict_never_prints_or_writes_a_non_finite_probability(trained_cnn3, sex_data, tmp_path, capsys, monkeypatch):
    import toolkit.training.engine

    real = toolkit.training.engine.predict_logits
    monkeypatch.setattr(toolkit.training.engine, "predict_logits", lambda *a, **k: real(*a, **k) * float("nan"))
    clip = first_clip(sex_data)
    code, out, err = run_stage("predict.py", "--model_file", trained_cnn3 / "cnn3_sex.pt", clip, "--out", tmp_path / "p.csv",
                               capsys=capsys)
    one_line_error(code, err, f"{clip}: cnn3 gave non-finite (NaN/inf) probabilities for it", "re-train it")
    assert "nan" not in out.lower() and not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("metric", ["ece", "f1", "loss"])
def test_training_never_prints_or_saves_a_non_finite_validation_score(sex_data, tmp_path, capsys, monkeypatch, metric):
    import toolkit.training.engine

    real = toolkit.training.engine.metrics_of
    monkeypatch.setattr(toolkit.training.engine, "metrics_of", lambda *a, **k: {**real(*a, **k), metric: float("nan")})
    code, out, err = run_stage("train_cnn.py", "--csv_load_path", sex_data, "--epochs", "1", "--batch_size", "32",
                               "--model_save_path", tmp_path, capsys=capsys)
    one_line_error(code, err, f"training diverged in epoch 1 (validation {metric} nan)")
    assert "nan" not in out.lower() and not list(tmp_path.glob("cnn3_sex*.json")) and not (tmp_path / "cnn3_sex.pt").exists()


# ------------------------------------------------------------------ family 4: bounded memory

def test_audio_is_read_in_blocks_with_the_numbers_of_a_whole_read(tmp_path, monkeypatch):
    import soundfile as sf
    import soxr

    import toolkit.io.audio

    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal((44100 * 2 + 77, 3))).astype(np.float32)
    sf.write(tmp_path / "three.wav", wave, 44100, subtype="FLOAT")
    monkeypatch.setattr(toolkit.io.audio, "BLOCK_FRAMES", 4096)  # many blocks, one of them short
    whole = soxr.resample(sf.read(tmp_path / "three.wav", dtype="float32")[0].mean(axis=1), 44100, 16000)
    np.testing.assert_array_equal(toolkit.io.audio.load_audio(str(tmp_path / "three.wav"), 16000), whole)


def test_a_many_channel_high_rate_file_is_read_within_a_bounded_memory(tmp_path):
    import tracemalloc

    import soundfile as sf

    from toolkit.io.audio import load_audio

    seconds, rate, channels = 40, 96000, 8
    t = np.arange(seconds * rate) / rate
    tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    with sf.SoundFile(tmp_path / "long.wav", "w", rate, channels, subtype="PCM_16") as f:
        for start in range(0, len(tone), rate):
            f.write(np.repeat(tone[start:start + rate, None], channels, axis=1))
    whole_read = seconds * rate * channels * 4  # what sf.read(dtype=float32) allocated at once: 123 MB
    tracemalloc.start()
    y = load_audio(str(tmp_path / "long.wav"), 16000, max_seconds=60)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(y) == seconds * 16000 and abs(float(np.abs(y).max()) - 0.2) < 0.01
    assert peak < whole_read / 4, f"peak {peak / 2**20:.0f} MB"


def test_a_header_with_too_many_channels_is_refused_before_reading(tmp_path):
    import soundfile as sf

    from toolkit.io.audio import ClipError, load_audio

    sf.write(tmp_path / "many.wav", np.zeros((800, 65), np.float32), 8000, subtype="FLOAT")
    with pytest.raises(ClipError, match=r"65 channels \(a broken header\?\); at most 64 are read"):
        load_audio(str(tmp_path / "many.wav"), 16000)


def nul_bytes(path: Path, size: int) -> Path:
    """A sparse file of `size` NUL bytes (no disk space used)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


@pytest.mark.parametrize("size, message", [(10 << 20, "NUL bytes: binary data in its first 65536 bytes, not a"),
                                           (2 << 30, "2048 MB is far too large for a")], ids=["10 MB", "2 GB"])
def test_a_csv_of_nul_bytes_is_refused_before_parsing(sex_data, tmp_path, capsys, size, message):
    nul_bytes(tmp_path / "meta.csv", size)
    code, _, err = run_stage("data_preprocessing.py", "--csv_file", tmp_path / "meta.csv", "--csv_path", tmp_path / "out",
                             "--audio_path", sex_data / "AudioWAV", capsys=capsys)
    one_line_error(code, err, "meta.csv: " + message + " metadata CSV")
    data = tmp_path / "d"
    data.mkdir()
    for s in SPLITS:
        nul_bytes(data / f"sex_{s}.csv", size)
    code, _, err = run_stage("train_cnn.py", "--csv_load_path", data, "--epochs", "1", "--model_save_path", tmp_path / "m",
                             capsys=capsys)
    one_line_error(code, err, "sex_train.csv: " + message + " CSV")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("m/*"))


def test_a_window_hop_of_a_sample_is_refused(trained_cnn3, sex_data, tmp_path, capsys):
    code, _, err = run_stage("predict.py", "--model_file", trained_cnn3 / "cnn3_sex.pt", first_clip(sex_data),
                             "--window_hop", "0.000001", "--out", tmp_path / "p.csv", capsys=capsys)
    one_line_error(code, err, "--window_hop 1e-06: windows closer than 0.01 of cnn3's window", "use at least 0.")
    assert not (tmp_path / "p.csv").exists()


# ------------------------------------------------------------------ family 5: own data, and messages that name the cause

@pytest.mark.parametrize("make, flags, message", [
    (lambda p: os.mkfifo(p), [], "meta.csv: is not a regular file (a pipe, device or socket), not a metadata CSV"),
    (lambda p: p.mkdir(), [], "meta.csv: is a folder, not a metadata CSV"),
    (lambda p: p.write_text("file,label\na.wav,sad\n"), ["--label_column", "label", "--classes", "sad,sad,afraid"],
     "argument error: --classes needs at least 2 distinct classes, got ['sad', 'sad', 'afraid']"),
    (lambda p: p.write_text("file,label\na.wav,sad\n"), ["--label_column", "label", "--classes", "sad"],
     "--classes needs at least 2 distinct classes, got ['sad']"),
], ids=["fifo", "folder", "duplicated classes", "one class"])
def test_own_metadata_is_refused_naming_the_real_cause(sex_data, tmp_path, capsys, make, flags, message):
    make(tmp_path / "meta.csv")
    code, _, err = run_stage("data_preprocessing.py", "--csv_file", tmp_path / "meta.csv", "--csv_path", tmp_path / "out",
                             "--audio_path", sex_data / "AudioWAV", *flags, capsys=capsys)
    one_line_error(code, err, message.removeprefix("argument error: "))
    assert not (tmp_path / "out").exists()
