"""Every bad input a user can give, run as the user runs it, with the behaviour the README promises. Each stage runs
in-process, through the same run_main wrapper its script's `__main__` calls (exit status, stdout and stderr as a
user sees them, without 3 s of start-up per case); test_pipeline.py runs the scripts' errors as subprocesses.

Two kinds of behaviour:
- a user error: exit status 2 and one line `error: <file>: <what> ; <what to do>` on stderr, no traceback,
  nothing written;
- a bad clip inside a long run (stage 2): the run completes, the clip is left out, and the summary at the end
  (and {category}_failed_clips.csv) names it and says why.
Unknown category / model and a missing split CSV for stage 3 are in test_pipeline.py.
"""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import conftest


def run_script(script: str, *args, check: bool = True):
    return conftest.run_script(script, *args, check=check, in_process=True)
from toolkit.features.mel import read_image
from toolkit.fileio import resolve_from_csv

SPLITS = ("train", "val", "test")


def assert_user_error(proc, *needles: str) -> str:
    """Exit 2, no traceback, and a last stderr line (progress bars come before it) that is the one-line error."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "error: " in line, proc.stderr
    assert sum("error" in l for l in proc.stderr.splitlines()) == 1, proc.stderr
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def file_under_a_file(tmp_path: Path) -> Path:
    """An output folder that cannot be created (its parent is a regular file): unwritable even for root."""
    (tmp_path / "a_file").write_text("not a folder\n")
    return tmp_path / "a_file" / "out"


# ---------------------------------------------------------------- stage 1: data_preprocessing.py


def stage1(corpus: Path, csv_file, out: Path, *extra: str, audio=None):
    return run_script("data_preprocessing.py", "--csv_file", csv_file, "--csv_path", out,
                      "--audio_path", audio or corpus / "AudioWAV", *extra, check=False)


def demographics(corpus: Path) -> pd.DataFrame:
    return pd.read_csv(corpus / "VideoDemographics.csv")


def empty_csv(corpus: Path, folder: Path) -> Path:
    (folder / "empty.csv").write_text("")
    return folder / "empty.csv"


def without_sex_column(corpus: Path, folder: Path) -> Path:
    demographics(corpus).drop(columns="Sex").to_csv(folder / "d.csv", index=False)
    return folder / "d.csv"


def one_actor_coded_m(corpus: Path, folder: Path) -> Path:
    table = demographics(corpus)
    table.loc[0, "Sex"] = "M"
    table.to_csv(folder / "d.csv", index=False)
    return folder / "d.csv"


STAGE1_CASES = {
    # name: (makes the metadata CSV in tmp_path (None: the corpus's own), extra args, expected in the error)
    "unknown category": (None, ["--category", "height"], ["no 'height' in CREMA-D's metadata", "sex, age, race, emotion"]),
    "missing CSV": (lambda c, p: p / "nope.csv", ["--category", "sex"], ["nope.csv: metadata CSV not found"]),
    "empty CSV": (empty_csv, ["--category", "sex"], ["empty.csv: cannot read it as CSV"]),
    "missing column": (without_sex_column, ["--category", "sex"], ["d.csv: neither CREMA-D's VideoDemographics.csv (one row per actor"]),
    "label outside the class list": (one_actor_coded_m, ["--category", "sex"],
                                     ["d.csv: 12 row(s) have sex label(s) ['M'] outside the class list", "fix or delete"]),
}


@pytest.mark.parametrize("case", list(STAGE1_CASES))
def test_stage1_user_errors(tiny_corpus, tmp_path, case):
    make, extra, needles = STAGE1_CASES[case]
    csv_file = make(tiny_corpus, tmp_path) if make else tiny_corpus / "VideoDemographics.csv"
    out = tmp_path / "out"
    assert_user_error(stage1(tiny_corpus, csv_file, out, *extra), *needles)
    assert not list(tmp_path.rglob("*_with_audio_path.csv"))


def test_stage1_audio_folder_that_does_not_exist(tiny_corpus, tmp_path):
    proc = stage1(tiny_corpus, tiny_corpus / "VideoDemographics.csv", tmp_path, "--category", "sex", audio=tmp_path / "NoSuchDir")
    assert_user_error(proc, "NoSuchDir: audio folder not found", "--audio_path")


def test_stage1_unwritable_output_folder(tiny_corpus, tmp_path):
    out = file_under_a_file(tmp_path)
    proc = stage1(tiny_corpus, tiny_corpus / "VideoDemographics.csv", out, "--category", "sex")
    assert_user_error(proc, str(out), "cannot create the output folder", "--csv_path")


# ---------------------------------------------------------------- stage 2: generate_mel_spectrograms.py


def stage1_table(sex_data: Path) -> pd.DataFrame:
    """Stage 1's table with absolute audio paths, so it can be rewritten into any folder."""
    csv = sex_data / "sex_with_audio_path.csv"
    table = pd.read_csv(csv)
    return table.assign(Audio_file_path=[resolve_from_csv(p, csv) for p in table["Audio_file_path"]])


def stage2(load: Path, out: Path, *extra: str, spec: Path | None = None):
    return run_script("generate_mel_spectrograms.py", "--load_csv_path", load, "--save_spec_path", spec or out,
                      "--save_csv_path", out, "--workers", "1", *extra, check=False)


STAGE2_CASES = {
    # name: (rewrite stage 1's table (None: no input CSV at all), extra args, expected in the error)
    "unknown category": (lambda t: t, ["--category", "height"], ["height_with_audio_path.csv: CSV not found"]),
    "missing CSV": (None, [], ["sex_with_audio_path.csv: CSV not found"]),
    "empty CSV": ("", [], ["sex_with_audio_path.csv: the CSV is empty"]),
    "missing column": (lambda t: t.drop(columns="ActorID"), [], ["sex_with_audio_path.csv: missing column(s) ['ActorID']"]),
    "label outside the class list": (lambda t: t.assign(sex=t["sex"].where(t.index > 0, "M")), [],
                                     ["sex_with_audio_path.csv: label(s) ['M'] in column 'sex' are not in the class list"]),
    "one speaker (speaker split)": (lambda t: t[t["ActorID"] == t["ActorID"].iloc[0]], [],
                                    ["sex_with_audio_path.csv: a speaker-disjoint split needs at least 3 speakers, found 1",
                                     "--split random"]),
    "two clips (random split)": (lambda t: t.head(2), ["--split", "random"],
                                 ["sex_with_audio_path.csv: 2 clips are too few for a stratified 72/8/20 split", "add clips"]),
}


@pytest.mark.parametrize("case", list(STAGE2_CASES))
def test_stage2_user_errors(sex_data, tmp_path, case):
    rewrite, extra, needles = STAGE2_CASES[case]
    load, out = tmp_path / "load", tmp_path / "out"
    load.mkdir()
    if isinstance(rewrite, str):
        (load / "sex_with_audio_path.csv").write_text(rewrite)
    elif rewrite is not None:
        rewrite(stage1_table(sex_data)).to_csv(load / "sex_with_audio_path.csv", index=False)
    assert_user_error(stage2(load, out, *extra), *needles)
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("sex_train.csv"))  # failed before any work


@pytest.mark.parametrize("flag", ["--save_csv_path", "--save_spec_path"])
def test_stage2_unwritable_output_folder(sex_data, tmp_path, flag):
    bad = file_under_a_file(tmp_path)
    args = {"--save_csv_path": tmp_path / "csv", "--save_spec_path": tmp_path / "spec", flag: bad}
    proc = run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--workers", "1",
                      *[str(x) for kv in args.items() for x in kv], check=False)
    assert_user_error(proc, str(bad), "cannot create the output folder", flag)
    assert not list(tmp_path.rglob("*.png"))


def write_bad_clips(folder: Path, source: Path) -> dict[str, str | None]:
    """One file per kind of bad clip; returns {file name: expected error, or None when the clip must work}."""
    folder.mkdir()
    y, sr = sf.read(source, dtype="float32")
    raw = source.read_bytes()
    import soxr

    (folder / "zero_byte.wav").write_bytes(b"")
    (folder / "truncated_header.wav").write_bytes(raw[:30])
    (folder / "not_audio.wav").write_text("this is a text file with a .wav name\n" * 20)
    sf.write(folder / "silence.wav", np.zeros(sr, np.float32), sr)
    (folder / "truncated_data.wav").write_bytes(raw[: len(raw) // 2])  # cut mid-samples: what is there is audio
    sf.write(folder / "short_0.1s.wav", y[: sr // 10], sr)
    sf.write(folder / "stereo_44k.wav", np.stack([soxr.resample(y, sr, 44100)] * 2, 1), 44100, subtype="PCM_16")
    sf.write(folder / "rate_8k.wav", soxr.resample(y, sr, 8000), 8000, subtype="PCM_16")
    sf.write(folder / "quiet_80dB.wav", y / np.abs(y).max() * 1e-4, sr, subtype="FLOAT")  # -80 dBFS
    sf.write(folder / "antiphase.wav", np.stack([y, -y], 1), sr, subtype="FLOAT")  # the downmix cancels out
    sf.write(folder / "float_1e20.wav", y * 1e20, sr, subtype="FLOAT")
    sf.write(folder / "header_1hz.wav", y[:8000], 1, subtype="PCM_16")  # 8 KB that would be resampled 16,000x
    (folder / "a_folder.wav").mkdir()
    os.mkfifo(folder / "fifo.wav")  # opening it for reading would wait forever
    return {
        "quiet_80dB.wav": "too quiet (peak -80 dBFS",
        "antiphase.wav": "silent clip",
        "float_1e20.wav": "far outside full scale (±1): not sound",
        "header_1hz.wav": "sample rate 1 Hz is outside 4000-192000 Hz",
        "a_folder.wav": "is a folder, not an audio file",
        "fifo.wav": "is not a regular file, not an audio file",
        "zero_byte.wav": "empty file (0 bytes)",
        "truncated_header.wav": "not a readable WAV file",
        "not_audio.wav": "not a readable WAV file",
        "silence.wav": "silent clip",
        "missing.wav": "audio file not found",  # listed in the CSV, never written
        "truncated_data.wav": None,
        "short_0.1s.wav": None,
        "stereo_44k.wav": None,
        "rate_8k.wav": None,
    }


@pytest.fixture(scope="module")
def bad_clips_run(sex_data, tmp_path_factory):
    """One stage-2 run over the corpus plus one clip of every bad kind (the corpus's images are reused)."""
    work = tmp_path_factory.mktemp("bad_clips")
    shutil.copytree(sex_data / "mel_spectrograms", work / "mel_spectrograms")
    table = stage1_table(sex_data)
    source = Path(table["Audio_file_path"].iloc[0])
    expected = write_bad_clips(work / "bad", source)
    first = table.iloc[0]
    extra = pd.DataFrame([{**first.to_dict(), "Audio_file_name": n, "Audio_file_path": str(work / "bad" / n)} for n in expected])
    pd.concat([table, extra]).to_csv(work / "sex_with_audio_path.csv", index=False)
    proc = run_script("generate_mel_spectrograms.py", "--load_csv_path", work, "--save_spec_path", work,
                      "--save_csv_path", work, "--workers", "1")
    splits = pd.concat([pd.read_csv(work / f"sex_{s}.csv") for s in SPLITS])
    return proc, work, expected, splits, source


def test_stage2_bad_clips_do_not_stop_the_run(bad_clips_run):
    proc, work, expected, splits, _ = bad_clips_run
    failing = [n for n, e in expected.items() if e]
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert len(splits) == 96 + len(expected) - len(failing)
    summary = proc.stdout[proc.stdout.index(f"warning: {len(failing)} clip(s) could not be used"):]
    assert "sex_test.csv" not in summary  # the summary comes after the CSVs were written: at the end
    failed = pd.read_csv(work / "sex_failed_clips.csv")
    assert sorted(failed["Audio_file_name"]) == sorted(failing)


@pytest.mark.parametrize("name", ["zero_byte.wav", "truncated_header.wav", "not_audio.wav", "silence.wav", "missing.wav",
                                  "quiet_80dB.wav", "antiphase.wav", "float_1e20.wav", "header_1hz.wav", "a_folder.wav",
                                  "fifo.wav"])
def test_stage2_bad_clip_is_reported_and_left_out(bad_clips_run, name):
    proc, work, expected, splits, _ = bad_clips_run
    failed = pd.read_csv(work / "sex_failed_clips.csv")  # every reason (the screen shows the first 10)
    line = failed.loc[failed["Audio_file_name"] == name, "error"].iloc[0]
    assert f"bad/{name}:" in line
    assert expected[name] in line and ";" in line  # what is wrong ; what to do
    assert name not in set(splits["Audio_file_name"])
    assert not list((work / "mel_spectrograms").rglob(name.replace(".wav", ".*.png")))


@pytest.mark.parametrize("name", ["truncated_data.wav", "short_0.1s.wav", "stereo_44k.wav", "rate_8k.wav"])
def test_stage2_unusual_but_valid_clip_works(bad_clips_run, name):
    proc, work, expected, splits, source = bad_clips_run
    row = splits[splits["Audio_file_name"] == name]
    assert len(row) == 1
    split_csv = next(work / f"sex_{s}.csv" for s in SPLITS if name in set(pd.read_csv(work / f"sex_{s}.csv")["Audio_file_name"]))
    image = read_image(resolve_from_csv(row["Image_file_path"].iloc[0], split_csv))
    frames = 1 + len(sf.read(source)[0]) // 512
    assert image.shape[0] == 180
    if name in ("stereo_44k.wav", "rate_8k.wav"):  # downmixed and resampled to 16 kHz: the same time axis
        assert image.shape[1] == frames
    elif name == "short_0.1s.wav":
        assert image.shape[1] == 1 + 1600 // 512


# ---------------------------------------------------------------- stage 3: train_cnn.py


@pytest.fixture
def splits_copy(sex_data, tmp_path) -> Path:
    """The sex split CSVs with absolute image paths in a folder of their own, to be spoiled by a test."""
    folder = tmp_path / "csv"
    folder.mkdir()
    for s in SPLITS:
        csv = sex_data / f"sex_{s}.csv"
        df = pd.read_csv(csv)
        df.assign(Image_file_path=[resolve_from_csv(p, csv) for p in df["Image_file_path"]]).to_csv(folder / csv.name, index=False)
    return folder


def train(csv_folder: Path, models: Path, *extra: str):
    return run_script("train_cnn.py", "--csv_load_path", csv_folder, "--category", "sex", "--epochs", "1",
                      "--batch_size", "32", "--threads", "1", "--model_save_path", models, *extra, check=False)


def spoil(folder: Path, split: str, how) -> None:
    path = folder / f"sex_{split}.csv"
    if isinstance(how, str):
        path.write_text(how)
    else:
        how(pd.read_csv(path)).to_csv(path, index=False)


STAGE3_CASES = {
    # name: (split to spoil, how, expected in the error)
    "empty CSV": ("train", "", ["sex_train.csv: the CSV is empty"]),
    "header only (empty split)": ("val", lambda d: d.head(0), ["sex_val.csv: the CSV has no rows"]),
    "missing column": ("test", lambda d: d.drop(columns="Image_file_path"), ["sex_test.csv: no feature column (Image_file_path"]),
    "label outside the class list": ("train", lambda d: d.assign(sex=d["sex"].where(d.index > 0, "M")),
                                     ["sex_train.csv: label(s) ['M'] in column 'sex' are not in the class list"]),
    "no image exists": ("val", lambda d: d.assign(Image_file_path="nowhere/" + d["Image_file_path"].str.split("/").str[-1]),
                        ["sex_val.csv: none of its", "re-run generate_mel_spectrograms.py"]),
}


@pytest.mark.parametrize("case", list(STAGE3_CASES))
def test_stage3_user_errors(splits_copy, tmp_path, case):
    split, how, needles = STAGE3_CASES[case]
    spoil(splits_copy, split, how)
    assert_user_error(train(splits_copy, tmp_path / "models"), *needles)
    assert not list((tmp_path / "models").glob("*.pt"))


def test_stage3_unwritable_output_folder(splits_copy, tmp_path):
    bad = file_under_a_file(tmp_path)
    assert_user_error(train(splits_copy, bad), str(bad), "cannot create the output folder", "--model_save_path")


def test_stage3_missing_image_is_reported_and_left_out(splits_copy, tmp_path):
    spoil(splits_copy, "train", lambda d: d.assign(Image_file_path=d["Image_file_path"].where(d.index > 0, "gone.png")))
    proc = train(splits_copy, tmp_path / "models")
    assert proc.returncode == 0, proc.stderr
    assert "warning: 1 feature file(s) listed in" in proc.stdout and "gone.png: image not found" in proc.stdout
    assert (tmp_path / "models" / "cnn3_sex.pt").is_file()


class RunsCode:
    """A pickle that would run a shell command when unpickled without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def foreign_last(kind: str, path: Path, tmp_path: Path, real_last: Path) -> None:
    """A `_last.pt` that --resume must refuse (the first two: a real run's, with another network's weights)."""
    from models import CNN3, CNN9

    if kind in ("another model", "another class count"):
        state = torch.load(real_last, weights_only=True)
        torch.save({**state, "model": (CNN9(2) if kind == "another model" else CNN3(6)).state_dict()}, path)
    elif kind == "truncated":
        torch.save({"model": CNN3(2).state_dict()}, path)
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "pickled code":
        with open(path, "wb") as f:
            pickle.dump({"model": RunsCode(tmp_path / "pwned")}, f)


@pytest.mark.parametrize("kind, message", [
    ("another model", "saved by a different model or class count"),
    ("another class count", "saved by a different model or class count"),
    ("truncated", "not a readable checkpoint"),
    ("pickled code", "not a readable checkpoint"),
])
def test_stage3_resume_refuses_a_foreign_checkpoint(splits_copy, trained_cnn3, tmp_path, kind, message):
    models = tmp_path / "models"
    models.mkdir()
    foreign_last(kind, models / "cnn3_sex_last.pt", tmp_path, trained_cnn3 / "cnn3_sex_last.pt")
    line = assert_user_error(train(splits_copy, models, "--resume"), "cnn3_sex_last.pt", message)
    assert "--resume" in line
    assert not (tmp_path / "pwned").exists()  # weights_only: the pickle's code never ran


def test_stage3_weights_for_another_model(splits_copy, trained_cnn3, tmp_path):
    proc = train(splits_copy, tmp_path / "models", "--model", "resnet18", "--weights", trained_cnn3 / "cnn3_sex.pt")
    assert_user_error(proc, "cnn3_sex.pt: these are not ImageNet weights for resnet18", "--no-pretrained")


# ---------------------------------------------------------------- stages 4-5 and predict.py: the cross-cutting rows
# (their own bad inputs, e.g. a mismatched encoder or start model, are in test_autoencoder.py, test_pseudo_labeling.py
# and test_predict.py)

TRAINING_STAGES = {  # script: the flag naming its output folder
    "train_cnn.py": "--model_save_path",
    "train_autoencoder.py": "--model_save_path",
    "cnn_classifier.py": "--model_save_and_load_path",
    "pseudo_labeling_semisupervised.py": "--model_save_and_load_path",
    "train_wav2vec2.py": "--model_save_path",
}


@pytest.mark.parametrize("script", list(TRAINING_STAGES))
def test_every_training_stage_refuses_epochs_0(sex_data, tmp_path, script):
    proc = run_script(script, "--csv_load_path", sex_data, "--epochs", "0", TRAINING_STAGES[script], tmp_path, check=False)
    assert_user_error(proc, "--epochs: must be a whole number from 1 to 100000, got 0")


@pytest.mark.parametrize("script", [s for s in TRAINING_STAGES if s != "train_cnn.py"])  # train_cnn.py: above
def test_every_training_stage_names_an_unusable_output_folder(sex_data, tmp_path, script):
    bad = file_under_a_file(tmp_path)
    extra = ["--unlabeled_csv", sex_data / "sex_test.csv"] if script.startswith("pseudo") else []
    proc = run_script(script, "--csv_load_path", sex_data, "--epochs", "1", "--threads", "1", TRAINING_STAGES[script], bad,
                      *extra, check=False)
    assert_user_error(proc, str(bad))  # stages 4c and 5 read their input model from that folder: "not found" first


def test_predict_names_an_unusable_output_file(trained_cnn3, sex_data, tmp_path):
    clip = sorted((sex_data / "AudioWAV").iterdir())[0]
    bad = file_under_a_file(tmp_path) / "predictions.csv"
    proc = run_script("predict.py", "--model_file", trained_cnn3 / "cnn3_sex.pt", "--out", bad, clip, check=False)
    assert_user_error(proc, "a_file", "writable")
