"""Issue 16's hostile inputs, each as a user (or an attacker) would give it: one-line errors or reported skips, never a
traceback, nothing lost, no code run from a file. Stage runs are in-process (run_stage: the same run_main wrapper a
script has) unless signals or process boundaries are the point."""
from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from conftest import ROOT, run_script
from toolkit.cli import run_main
from toolkit.fileio import reason_of, resolve_from_csv

SPLITS = ("train", "val", "test")


def run_stage(script: str, *argv, capsys) -> tuple[int, str, str]:
    """A stage's main() through run_main in this process: (exit status, stdout, stderr)."""
    module = importlib.import_module(script.removesuffix(".py"))
    try:
        run_main(lambda: module.main([str(a) for a in argv]))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err and lines and lines[-1].startswith(("error: ", f"{lines[-1].split(':')[0]}: error")), err
    assert sum("error" in line for line in lines) == 1, err
    for needle in needles:
        assert needle in lines[-1], f"{needle!r} not in {lines[-1]!r}"
    return lines[-1]


# ------------------------------------------------------------------ stage 1: metadata layouts, skipped files, bad values

def per_clip_emotions_csv(corpus: Path, path: Path) -> pd.DataFrame:
    """The seed's Emotions-folder CREMA-D_nopath.csv: one row per clip, Sex/Race/Age of the actor, no age group."""
    actors = pd.read_csv(corpus / "VideoDemographics.csv").set_index("ActorID")
    rows = []
    for wav in sorted(p.name for p in (corpus / "AudioWAV").iterdir()):
        actor, sentence, emotion, level = wav[:-4].split("_")
        a = actors.loc[int(actor)]
        rows.append({"ActorID": int(actor), "Age": a["Age"], "Sex": a["Sex"], "Race": a["Race"], "Ethnicity": a["Ethnicity"],
                     "File Name": wav, "emotion": emotion, "Emotion Level": level, "Sentence": sentence})
    table = pd.DataFrame(rows)
    table.to_csv(path, index=False)
    return table


def test_the_seeds_per_clip_csv_with_demographic_columns_is_not_multiplied(tiny_corpus, tmp_path, capsys):
    table = per_clip_emotions_csv(tiny_corpus, tmp_path / "CREMA-D_nopath.csv")
    code, out, err = run_stage("data_preprocessing.py", "--csv_file", tmp_path / "CREMA-D_nopath.csv", "--csv_path", tmp_path,
                               "--audio_path", tiny_corpus / "AudioWAV", "--category", "age", capsys=capsys)
    assert code == 0, err
    written = pd.read_csv(tmp_path / "age_with_audio_path.csv")
    assert len(written) == len(table) == 96  # one row per clip (it was 96 × 12 when read as per-actor demographics)
    from_demographics = tmp_path / "d"
    run_stage("data_preprocessing.py", "--csv_file", tiny_corpus / "VideoDemographics.csv", "--csv_path", from_demographics,
              "--audio_path", tiny_corpus / "AudioWAV", "--category", "age", capsys=capsys)
    expected = pd.read_csv(from_demographics / "age_with_audio_path.csv")
    assert list(written["age"]) == list(expected["age"]) and list(written["Audio_file_name"]) == list(expected["Audio_file_name"])


def test_a_metadata_file_of_neither_layout_is_refused_naming_its_columns(tiny_corpus, tmp_path, capsys):
    pd.DataFrame({"ActorID": [1001], "Sex": ["Male"], "File Name": ["1001_DFA_ANG_XX.wav"]}).to_csv(tmp_path / "m.csv", index=False)
    code, _, err = run_stage("data_preprocessing.py", "--csv_file", tmp_path / "m.csv", "--csv_path", tmp_path,
                             "--audio_path", tiny_corpus / "AudioWAV", capsys=capsys)
    one_line_error(code, err, "m.csv: neither CREMA-D's VideoDemographics.csv", "found ['ActorID', 'Sex', 'File Name']")


def test_stage1_reports_every_file_it_leaves_out(tiny_corpus, tmp_path, capsys):
    audio = tmp_path / "AudioWAV"
    shutil.copytree(tiny_corpus / "AudioWAV", audio)
    first = sorted(audio.iterdir())[0]
    shutil.copy(first, audio / first.name.lower())  # 1001_dfa_..._xx.wav
    shutil.copy(first, audio / (first.stem + " (copy).wav"))
    shutil.copy(first, audio / first.name.replace(first.name[:4], "1999"))  # an actor the demographics do not know
    code, out, err = run_stage("data_preprocessing.py", "--csv_file", tiny_corpus / "VideoDemographics.csv", "--csv_path",
                               tmp_path, "--audio_path", audio, "--category", "sex", capsys=capsys)
    assert code == 0, err
    assert "2 file(s) of the audio folder left out: their names are not CREMA-D clip names" in out
    assert first.name.lower() in out and "(copy)" in out
    assert "1 clip(s) left out: their actor is not in VideoDemographics.csv, e.g. 1999_" in out
    assert len(pd.read_csv(tmp_path / "sex_with_audio_path.csv")) == 96


@pytest.mark.parametrize("change, message", [
    (lambda d: pd.concat([d, d.head(1)]), "1 actor(s) have more than one row, e.g. ActorID 1001; keep one row per actor"),
    (lambda d: pd.concat([d, d.head(1).assign(Age=d["Age"].iloc[0] + 1)]), "1 actor(s) have rows that disagree, e.g. ActorID 1001"),
    (lambda d: d.assign(Age=d["Age"].astype(str).where(d.index > 0, "unknown")), "column 'Age' needs whole numbers of years (0-130); row(s) [2]"),
    (lambda d: d.assign(Age=d["Age"].where(d.index > 1, np.nan)), "column 'Age' needs whole numbers of years (0-130); row(s) [2, 3]"),
    (lambda d: d.assign(Age=d["Age"].where(d.index > 0, -3)), "column 'Age' needs whole numbers of years (0-130); row(s) [2]"),
    (lambda d: d.assign(Age=d["Age"].where(d.index > 0, 500)), "column 'Age' needs whole numbers of years (0-130); row(s) [2] (line numbers) hold [500]"),
    (lambda d: d.assign(ActorID=d["ActorID"].astype(str).where(d.index > 0, "A1")), "column 'ActorID' needs whole numbers"),
], ids=["duplicated actor", "conflicting actor", "text age", "missing age", "negative age", "age 500", "text actor id"])
def test_bad_demographics_are_one_line_errors_whatever_the_category(tiny_corpus, tmp_path, capsys, change, message):
    change(pd.read_csv(tiny_corpus / "VideoDemographics.csv")).to_csv(tmp_path / "d.csv", index=False)
    code, _, err = run_stage("data_preprocessing.py", "--csv_file", tmp_path / "d.csv", "--csv_path", tmp_path,
                             "--audio_path", tiny_corpus / "AudioWAV", "--category", "sex", capsys=capsys)
    one_line_error(code, err, "d.csv: " + message)
    assert not (tmp_path / "sex_with_audio_path.csv").exists()


# ------------------------------------------------------------------ stage 2: duplicated rows, blank rows, parameters

def stage1_copy(sex_data: Path, folder: Path, change=None) -> Path:
    """sex_data's stage-1 CSV (absolute audio paths) in `folder`, optionally changed."""
    csv = sex_data / "sex_with_audio_path.csv"
    table = pd.read_csv(csv)
    table = table.assign(Audio_file_path=[resolve_from_csv(p, csv) for p in table["Audio_file_path"]])
    folder.mkdir(parents=True, exist_ok=True)
    (change(table) if change else table).to_csv(folder / "sex_with_audio_path.csv", index=False)
    return folder


def test_duplicated_rows_are_used_once_and_cannot_leak_into_test(sex_data, tmp_path, capsys):
    load = stage1_copy(sex_data, tmp_path / "load", lambda t: pd.concat([t, t.head(30)]))
    code, out, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", load, "--save_spec_path", sex_data,
                               "--save_csv_path", tmp_path, "--split", "random", "--workers", "1", capsys=capsys)
    assert code == 0, err
    assert "30 clip(s) are listed more than once with the same values" in out
    parts = {s: pd.read_csv(tmp_path / f"sex_{s}.csv") for s in SPLITS}
    assert sum(len(p) for p in parts.values()) == 96
    assert not set(parts["train"]["Audio_file_name"]) & set(parts["test"]["Audio_file_name"])


def test_rows_without_audio_are_reported_and_left_out(sex_data, tmp_path, capsys):
    load = stage1_copy(sex_data, tmp_path / "load",
                       lambda t: t.assign(Audio_file_name=t["Audio_file_name"].where(t.index > 1, np.nan)))
    code, out, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", load, "--save_spec_path", sex_data,
                               "--save_csv_path", tmp_path, "--workers", "1", capsys=capsys)
    assert code == 0, err
    assert "2 row(s) of" in out and "have no Audio_file_name / Audio_file_path and are left out" in out
    assert sum(len(pd.read_csv(tmp_path / f"sex_{s}.csv")) for s in SPLITS) == 94


@pytest.mark.parametrize("flags, message", [
    (["--n_fft", "16"], "n_fft 16 gives no usable frequency resolution"),
    (["--n_mels", "1000"], "mel bands are empty with n_fft 1536 at 16000 Hz"),
    (["--hop_length", "100000"], "hop_length 100000 is longer than the window"),
    (["--sr", "100"], "sample rate 100 is outside 4000-192000 Hz"),
])
def test_spectrogram_parameters_that_make_garbage_are_refused_before_any_work(sex_data, tmp_path, capsys, flags, message):
    code, _, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", tmp_path,
                             "--save_csv_path", tmp_path, "--workers", "1", *flags, capsys=capsys)
    one_line_error(code, err, message)
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.glob("*.csv"))


def test_preset_seed_makes_the_seeds_spectrograms_per_category(sex_data, tmp_path, capsys):
    from toolkit.features.mel import MelParams

    load = stage1_copy(sex_data, tmp_path / "load")
    shutil.copy(load / "sex_with_audio_path.csv", load / "age_with_audio_path.csv")  # stage 1 keeps the age column too
    for category, (n_fft, hop) in (("sex", (1536, 512)), ("age", (2048, 1024))):
        code, _, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", load, "--save_spec_path", tmp_path,
                                 "--save_csv_path", tmp_path / category, "--category", category, "--preset", "seed",
                                 "--n_mels", "128", "--split", "random", "--workers", "2", capsys=capsys)
        assert code == 0, err
        params = MelParams.from_dict(json.loads(next((tmp_path / "mel_spectrograms").glob(f"*fft{n_fft}*/params.json")).read_text()))
        assert params == MelParams(n_fft=n_fft, hop_length=hop, n_mels=128, db_ref="max", mel_scale="htk", pad_mode="reflect")


def test_htk_and_reflect_are_librosas_htk_and_reflect():
    import librosa

    from toolkit.features.mel import MelParams, log_mel

    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    seed = MelParams(mel_scale="htk", pad_mode="reflect")
    power = librosa.feature.melspectrogram(y=tone, sr=16000, n_fft=1536, hop_length=512, n_mels=180, htk=True, pad_mode="reflect")
    np.testing.assert_allclose(log_mel(tone, seed), librosa.power_to_db(power, ref=np.max, top_db=80), atol=1e-3)
    slaney = MelParams()
    assert log_mel(tone, seed).mean(1).argmax() != log_mel(tone, slaney).mean(1).argmax()  # other band edges


# ------------------------------------------------------------------ stage 2: the image cache is keyed by the audio

def test_images_of_other_audio_under_the_same_names_are_never_reused(sex_data, tiny_corpus, tmp_path, capsys):
    spec = tmp_path / "spec"
    shutil.copytree(sex_data / "mel_spectrograms", spec / "mel_spectrograms")  # the first corpus's images
    other = tmp_path / "AudioWAV"
    other.mkdir()
    names = sorted(p.name for p in (tiny_corpus / "AudioWAV").iterdir())
    for name, source in zip(names, names[1:] + names[:1]):  # every name now holds another clip's audio
        shutil.copy(tiny_corpus / "AudioWAV" / source, other / name)
    load = stage1_copy(sex_data, tmp_path / "load",
                       lambda t: t.assign(Audio_file_path=[str(other / n) for n in t["Audio_file_name"]]))
    code, out, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", load, "--save_spec_path", spec,
                               "--save_csv_path", tmp_path, "--workers", "2", capsys=capsys)
    assert code == 0, err
    assert "96 clips, 0 mel files already made, 96 to make" in out  # the first corpus's images are not taken
    # ... and a replaced recording (here: made quieter) gets a new image on the next run, the others are reused
    y, sr = sf.read(other / names[0])
    sf.write(other / names[0], 0.5 * y, sr)
    code, out, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", load, "--save_spec_path", spec,
                               "--save_csv_path", tmp_path, "--workers", "1", capsys=capsys)
    assert code == 0 and "96 clips, 95 mel files already made, 1 to make" in out, err


# ------------------------------------------------------------------ outputs: full disk, permissions, umask

def test_a_full_disk_stops_stage2_naming_the_file_and_keeps_the_earlier_split(sex_data, tmp_path, capsys, monkeypatch):
    from PIL import Image

    out = tmp_path / "csv"
    out.mkdir()
    for s in SPLITS:
        (out / f"sex_{s}.csv").write_text(f"the earlier {s} split\n")
    writes = []
    real = Image.Image.save

    def disk_fills_up(image, path, *args, **kwargs):  # what PIL raises when the disk is full
        if len(writes) >= 5:
            raise OSError(28, "No space left on device")
        writes.append(path)
        real(image, path, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", disk_fills_up)
    code, _, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", tmp_path,
                             "--save_csv_path", out, "--workers", "1", capsys=capsys)
    line = one_line_error(code, err, "No space left on device", "free disk space")
    assert ".png: cannot write it" in line and ".tmp" not in line
    assert all((out / f"sex_{s}.csv").read_text() == f"the earlier {s} split\n" for s in SPLITS)
    assert not (out / "sex_failed_clips.csv").exists()  # a full disk is never a bad clip


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 200 KB file system, where the machine lets us mount one (root); skipped elsewhere."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_really_full_disk_stops_stage2(sex_data, small_tmpfs, tmp_path, capsys):
    code, _, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", small_tmpfs,
                             "--save_csv_path", tmp_path, "--workers", "2", capsys=capsys)
    one_line_error(code, err, str(small_tmpfs), "cannot write it", "free disk space")
    assert not (tmp_path / "sex_train.csv").exists()


def test_a_checkpoint_on_a_full_disk_is_one_line_naming_it(sex_data, tmp_path, capsys, monkeypatch):
    def full(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:659] . PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full)
    code, _, err = run_stage("train_cnn.py", "--csv_load_path", sex_data, "--epochs", "1", "--model_save_path", tmp_path,
                             capsys=capsys)
    one_line_error(code, err, "cnn3_sex", ".pt: cannot write it (", "free disk space")


def test_outputs_follow_the_umask(sex_data, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        code, _, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", sex_data,
                                 "--save_csv_path", tmp_path, "--workers", "1", capsys=capsys)
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "sex_train.csv").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "sex_split.json").stat().st_mode) == 0o644


# ------------------------------------------------------------------ files that are not regular, or far too large

def test_a_fifo_as_a_csv_is_refused_at_once(sex_data, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.csv")
    code, _, err = run_stage("train_cnn.py", "--csv_load_path", sex_data, "--train_csv", tmp_path / "pipe.csv", "--epochs", "1",
                             "--model_save_path", tmp_path / "m", capsys=capsys)
    one_line_error(code, err, "pipe.csv: is not a regular file (a pipe, device or socket), not a CSV")


def test_a_fifo_as_an_image_is_reported_and_left_out(sex_data, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.png")
    for s in SPLITS:
        table = pd.read_csv(sex_data / f"sex_{s}.csv")
        table = table.assign(Image_file_path=[resolve_from_csv(p, sex_data / "x.csv") for p in table["Image_file_path"]])
        if s == "train":
            table.loc[0, "Image_file_path"] = str(tmp_path / "pipe.png")
        table.to_csv(tmp_path / f"sex_{s}.csv", index=False)
    code, out, err = run_stage("train_cnn.py", "--csv_load_path", tmp_path, "--epochs", "1", "--model_save_path", tmp_path / "m",
                               capsys=capsys)
    assert code == 0, err
    assert "pipe.png: not a regular file" in out


def test_summarize_never_follows_a_card_to_a_device(trained_cnn3, tmp_path, capsys):
    import summarize_runs

    legacy = json.loads((ROOT / "tests" / "fixtures" / "legacy_cnn3_sex.json").read_text())
    (tmp_path / "x_metrics.json").write_text(json.dumps({**legacy, "train_csv": "/dev/zero", "history": []}))
    started = time.time()
    code, out, err = run_stage("summarize_runs.py", tmp_path, capsys=capsys)
    assert code == 0, err
    assert time.time() - started < 30
    assert pd.read_csv(tmp_path / "runs_summary.csv")["split"].tolist() == ["?"]
    del summarize_runs


# ------------------------------------------------------------------ training: divergence, resume, two runs, bad flags

def test_a_diverging_run_stops_and_never_saves_a_non_finite_model(tmp_path):
    import sys as _sys

    _sys.path.insert(0, str(ROOT / "tests"))
    from test_recipe import run_fit

    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError, match=r"training diverged in epoch 1 \(training loss nan\): lower --learning_rate"):
        run_fit(tmp_path, lambda model, epoch: float("nan"))
    assert not (tmp_path / "toy.pt").exists() and not (tmp_path / "toy.json").exists()


@pytest.mark.parametrize("flags, message", [
    (["--learning_rate", "inf"], "argument --learning_rate: must be a finite number above 0, got inf"),
    (["--learning_rate", "nan"], "argument --learning_rate: must be a finite number above 0, got nan"),
    (["--learning_rate", "-1"], "argument --learning_rate: must be a finite number above 0, got -1"),
    (["--threads", "-1"], "argument --threads: must be a whole number from 1 to 1024, got -1"),
    (["--seed", "-1"], "argument --seed: must be a whole number from 0 to 4294967295, got -1"),
    (["--device", "garbage"], "--device 'garbage': not a device; use auto, cpu, cuda or cuda:N"),
    (["--frames", "64"], "cnn3 takes 128×128 images (its Linear layer is sized for them), these are 128×64"),
])
def test_bad_training_flags_are_one_line_errors(sex_data, tmp_path, capsys, flags, message):
    code, _, err = run_stage("train_cnn.py", "--csv_load_path", sex_data, "--epochs", "1", "--model_save_path", tmp_path,
                             *flags, capsys=capsys)
    one_line_error(code, err, message)
    assert not list(tmp_path.glob("*.pt"))


def test_predict_refuses_non_finite_weights(trained_cnn3, sex_data, tmp_path, capsys):
    state = torch.load(trained_cnn3 / "cnn3_sex.pt", weights_only=True)
    torch.save({k: v * float("nan") if v.is_floating_point() else v for k, v in state.items()}, tmp_path / "cnn3_sex.pt")
    shutil.copy(trained_cnn3 / "cnn3_sex.json", tmp_path / "cnn3_sex.json")
    clip = sorted((sex_data / "AudioWAV").iterdir())[0]
    code, _, err = run_stage("predict.py", "--model_dir", tmp_path, "--model_file", "cnn3_sex.pt", clip, capsys=capsys)
    one_line_error(code, err, "cnn3_sex.pt: holds non-finite (NaN/inf) weights", "lower --learning_rate")


def test_resume_refuses_other_training_flags_but_not_more_epochs(sex_data, one_epoch_run, tmp_path, capsys):
    shutil.copytree(one_epoch_run, tmp_path, dirs_exist_ok=True)
    base = ["--csv_load_path", sex_data, "--model_save_path", tmp_path, "--batch_size", "32"]
    code, _, err = run_stage("train_cnn.py", *base, "--epochs", "2", "--resume", "--learning_rate", "0.01", "--recipe", "seed",
                             capsys=capsys)
    line = one_line_error(code, err, "cnn3_sex_last.pt: --resume with other training flags than the interrupted run")
    assert "--learning_rate 0.01 (was 0.001)" in line and "--time_axis resize (was pad)" in line and "--epochs 2" not in line
    code, out, err = run_stage("train_cnn.py", *base, "--epochs", "2", "--resume", capsys=capsys)
    assert code == 0 and "resuming" in out, err


def test_resume_refuses_other_model_arguments():
    """--vote_bound or --dropout change the network but not its weights' shapes: the _last.pt records them."""
    from toolkit.config import TrainConfig
    from toolkit.errors import ToolkitError
    from toolkit.training.engine import check_resumable

    was = {"hidden": 256, "layers": 2, "dropout": 0.2, "vote_bound": 0.0}
    check_resumable("m_last.pt", {"model_args": was}, TrainConfig(), model_args=dict(was))
    check_resumable("m_last.pt", {}, TrainConfig(), model_args=dict(was))  # written before they were recorded
    with pytest.raises(ToolkitError, match=r"^m_last.pt: --resume with other model arguments than the interrupted "
                                           r"run: --vote_bound 5.0 \(was 0.0\); resume with the run's own"):
        check_resumable("m_last.pt", {"model_args": was}, TrainConfig(), model_args={**was, "vote_bound": 5.0})


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_second_run_into_the_same_folder_stops_and_a_dead_runs_lock_is_taken_over(sex_data, tmp_path, capsys):
    from toolkit.training.engine import RunFiles

    with RunFiles(str(tmp_path), "cnn3_sex").lock():  # this test's process holds it, as a first run would
        proc = run_script("train_cnn.py", "--csv_load_path", sex_data, "--epochs", "1", "--threads", "1",
                          "--model_save_path", tmp_path, check=False, in_process=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"cnn3_sex.lock: another run (process {os.getpid()}) is writing cnn3_sex in" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "cnn3_sex.pt").exists()
    (tmp_path / "cnn3_sex.lock").write_text(str(dead_pid()))
    code, _, err = run_stage("train_cnn.py", "--csv_load_path", sex_data, "--epochs", "1", "--model_save_path", tmp_path,
                             capsys=capsys)
    assert code == 0, err
    assert (tmp_path / "cnn3_sex.pt").exists() and not (tmp_path / "cnn3_sex.lock").exists()


@pytest.mark.parametrize("spoil, message", [
    (lambda s: {k: v for k, v in s.items() if k != "history"}, "(no history)"),
    (lambda s: {**s, "history": [{"epoch": 1}]}, "(its epoch and per-epoch history do not agree)"),
    (lambda s: {**s, "best_model": None}, "(best epoch 1 without its weights)"),
], ids=["no history", "malformed history", "no best model"])
def test_a_malformed_last_checkpoint_is_a_one_line_error(sex_data, one_epoch_run, tmp_path, capsys, spoil, message):
    shutil.copytree(one_epoch_run, tmp_path, dirs_exist_ok=True)
    base = ["--csv_load_path", sex_data, "--model_save_path", tmp_path, "--batch_size", "32"]
    last = tmp_path / "cnn3_sex_last.pt"
    torch.save(spoil(torch.load(last, weights_only=True)), last)
    code, _, err = run_stage("train_cnn.py", *base, "--epochs", "2", "--resume", capsys=capsys)
    one_line_error(code, err, "cnn3_sex_last.pt: not a resumable checkpoint of a run " + message, "drop --resume")


# ------------------------------------------------------------------ run cards and params.json edited or broken

@pytest.mark.parametrize("change, message", [
    (lambda c: {**c, "input": {**c["input"], "image_size": [128, 64]}}, "frames 128 does not go with time_axis pad and image_size [128, 64]"),
    (lambda c: {**c, "input": {**c["input"], "frames": 100}}, "frames 100 does not go with time_axis pad"),
    (lambda c: {**c, "input": {**c["input"], "image_size": "big"}}, "image_size 'big' is not [height, width] in pixels"),
    (lambda c: {**c, "input": {**c["input"], "time_axis": "stretch"}}, "time_axis 'stretch' is not one of resize, pad"),
    (lambda c: {**c, "input": {**c["input"], "shape": [3, 64, 64]}}, "input shape [3, 64, 64] is not that of 128×128 images"),
    (lambda c: {**c, "features": {**c["features"], "params": {**c["features"]["params"], "n_mels": 0}}},
     "n_mels 0: must be whole numbers of at least 1"),
    (lambda c: {**c, "features": {**c["features"], "params": {**c["features"]["params"], "db_ref": "foo"}}},
     "db_ref 'foo' is not one of max, fixed"),
    (lambda c: {**c, "classes": ["Female", "Male"]}, "classes ['Female', 'Male'] are CREMA-D's sex classes in another order"),
    (lambda c: {**c, "category": ["sex"]}, "run card: field 'category' input should be a valid string (got ['sex'])"),
], ids=["image_size", "frames", "image_size text", "time_axis", "shape", "n_mels 0", "db_ref", "classes swapped", "category list"])
def test_an_edited_run_card_is_refused_by_predict(trained_cnn3, sex_data, tmp_path, capsys, change, message):
    shutil.copy(trained_cnn3 / "cnn3_sex.pt", tmp_path / "m.pt")
    (tmp_path / "m.json").write_text(json.dumps(change(json.loads((trained_cnn3 / "cnn3_sex.json").read_text()))))
    clip = sorted((sex_data / "AudioWAV").iterdir())[0]
    code, _, err = run_stage("predict.py", "--model_file", tmp_path / "m.pt", clip, capsys=capsys)
    one_line_error(code, err, "m.json: " + message)


def broken_params_copy(sex_data: Path, tmp_path: Path) -> Path:
    """The sex split and its images in tmp_path, the images' params.json replaced by broken JSON."""
    shutil.copytree(sex_data / "mel_spectrograms", tmp_path / "mel_spectrograms")
    for s in SPLITS:
        shutil.copy(sex_data / f"sex_{s}.csv", tmp_path / f"sex_{s}.csv")
    params = next((tmp_path / "mel_spectrograms").glob("*/params.json"))
    params.write_text("{not json")
    return params


def test_a_broken_params_json_is_one_line_in_stage_3_and_repaired_by_stage_2(sex_data, tmp_path, capsys):
    params = broken_params_copy(sex_data, tmp_path)
    code, _, err = run_stage("train_cnn.py", "--csv_load_path", tmp_path, "--epochs", "1", "--model_save_path", tmp_path / "m",
                             capsys=capsys)
    one_line_error(code, err, "params.json: not valid JSON", "delete it and re-run generate_mel_spectrograms.py")
    code, _, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", tmp_path,
                             "--save_csv_path", tmp_path / "csv", "--workers", "1", capsys=capsys)
    assert code == 0 and json.loads(params.read_text())["n_mels"] == 180, err


def test_a_broken_params_json_is_one_line_in_stage_5(trained_cnn3, sex_data, tmp_path, capsys):
    broken_params_copy(sex_data, tmp_path)
    code, _, err = run_stage("pseudo_labeling_semisupervised.py", "--csv_load_path", tmp_path, "--unlabeled_csv",
                             sex_data / "sex_test.csv", "--model_save_and_load_path", trained_cnn3, "--epochs", "1",
                             "--pseudolabeling_param_file", tmp_path / "pl.pt", capsys=capsys)
    one_line_error(code, err, "params.json: not valid JSON")


@pytest.fixture(scope="module")
def one_epoch_autoencoder(sex_data, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("one_epoch_ae")
    run_script("train_autoencoder.py", "--csv_load_path", sex_data, "--batch_size", "32", "--epochs", "1", "--threads", "1",
               "--model_save_path", folder, in_process=True)
    return folder


@pytest.mark.parametrize("spoil, message, unreadable", [
    (lambda c: "{not json", "autoencoder_3_layers.json: not valid JSON", True),
    (lambda c: json.dumps({**c, "metrics": {}}), "not an autoencoder's run card with its final loss (metrics.loss None)", False),
    (lambda c: json.dumps({**c, "metrics": {**c["metrics"], "loss": "low"}}), "(metrics.loss 'low')", False),
    (lambda c: json.dumps({**c, "schema": 99}), "run card schema 99 is newer than this toolkit's", True),
    (lambda c: json.dumps({**c, "metrics": []}), "run card: field 'metrics' input should be a valid dictionary", True),
    (lambda c: json.dumps({**c, "init_detail": "x"}), "run card: field 'init_detail' input should be a valid dictionary", True),
    (lambda c: json.dumps({**c, "classes": [0, 1]}), "run card: field 'classes.0' input should be a valid string", True),
], ids=["not json", "no loss", "text loss", "newer schema", "metrics list", "init detail text", "int classes"])
def test_a_broken_autoencoder_card_is_one_line_in_4b_and_a_warning_in_4c(sex_data, one_epoch_autoencoder, tmp_path, capsys,
                                                                         spoil, message, unreadable):
    shutil.copytree(one_epoch_autoencoder, tmp_path, dirs_exist_ok=True)
    base = ["--csv_load_path", sex_data, "--batch_size", "32"]
    card = tmp_path / "autoencoder_3_layers.json"
    card.write_text(spoil(json.loads(card.read_text())))
    code, _, err = run_stage("testing_autoencoder.py", *base, "--model_load_path", tmp_path, capsys=capsys)
    one_line_error(code, err, message)
    code, out, err = run_stage("cnn_classifier.py", *base, "--epochs", "1", "--model_save_and_load_path", tmp_path, capsys=capsys)
    assert code == 0, err  # 4c only compares its inputs with the card's: an unreadable card is a warning
    assert ("warning: the autoencoder's run card cannot be read" in out) == unreadable


@pytest.mark.parametrize("change, why", [
    (lambda c: {**c, "metrics": {**c["metrics"], "seconds": "fast"}}, "seconds is 'fast', not a number"),
    (lambda c: {**c, "category": ["sex", "age"]}, "field 'category' input should be a valid string"),
    (lambda c: {**c, "metrics": {**c["metrics"], "test": {**c["metrics"]["test"], "f1": float("nan")}}}, "not finite (nan)"),
    (lambda c: {**c, "metrics": {**c["metrics"], "seconds": float("inf")}}, "not finite (inf)"),
    (lambda c: {**c, "history": "abcdefghij"}, "history is str, not a list of epochs"),
], ids=["seconds text", "category list", "nan f1", "inf seconds", "history string"])
def test_summarize_skips_a_spoiled_metrics_file_with_a_warning(trained_cnn3, tmp_path, capsys, change, why):
    shutil.copy(trained_cnn3 / "cnn3_sex_metrics.json", tmp_path / "a_metrics.json")
    spoiled = change(json.loads((trained_cnn3 / "cnn3_sex_metrics.json").read_text()))
    (tmp_path / "b_metrics.json").write_text(json.dumps(spoiled))
    code, out, err = run_stage("summarize_runs.py", tmp_path, capsys=capsys)
    assert code == 0, err
    assert "b_metrics.json: not the metrics of a finished classifier run" in out and why in out
    table = pd.read_csv(tmp_path / "runs_summary.csv").drop(columns="untested classes")  # text, empty when all tested
    assert len(table) == 1 and np.isfinite(table.select_dtypes("number").to_numpy()).all()


def test_summarize_checks_its_output_folder_before_reading_runs(trained_cnn3, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    code, _, err = run_stage("summarize_runs.py", trained_cnn3, "--out", tmp_path / "a_file" / "s.csv", capsys=capsys)
    one_line_error(code, err, "a_file: cannot create the output folder", "--out")


# ------------------------------------------------------------------ processes: a killed worker, an early Ctrl-C

def test_a_killed_stage2_worker_is_one_line(sex_data, tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "generate_mel_spectrograms.py"), "--load_csv_path", sex_data,
                             "--save_spec_path", tmp_path, "--save_csv_path", tmp_path, "--workers", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # the pool's workers: children of the stage
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if children and list((tmp_path / "mel_spectrograms").glob("*/*.png")):
            os.kill(int(children[0]), signal.SIGKILL)
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert "a worker process died (killed, or out of memory?); re-run to continue" in err.strip().splitlines()[-1]


# Runs a stage script as `python script.py ...` does, but sends the process SIGINT at the moment the named module
# starts to import: a Ctrl-C at a chosen point of start-up, whatever the machine's speed. "swallowed" also does what
# a library's import can do with a KeyboardInterrupt: catch it and fail some other way (the traceback a slow machine
# showed from inside `import torch`).
CTRL_C_AT_IMPORT = """
import os, runpy, signal, sys
module, how, script = sys.argv[1:4]
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            sys.meta_path.remove(self)
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt:
                if how == "swallowed":
                    raise ImportError("half-initialised module")
                raise
        return None
sys.meta_path.insert(0, CtrlC())
sys.argv = sys.argv[3:]
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("module, how", [("numpy", "raised"), ("torch", "raised"), ("torch.nn", "swallowed"),
                                         ("pandas", "swallowed")])  # (scikit-learn: imported only where a split is made)
def test_ctrl_c_during_the_imports_is_one_line(tmp_path, module, how):
    proc = subprocess.run([sys.executable, "-c", CTRL_C_AT_IMPORT, module, how, str(ROOT / "train_cnn.py"),
                           "--csv_load_path", tmp_path, "--epochs", "1", "--model_save_path", tmp_path / "models"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr, proc.stdout) == (130, "interrupted: finished outputs are kept; re-run "
                                                                "(with --resume for training) to continue\n", "")
    assert not (tmp_path / "models").exists()


def test_importing_the_toolkit_leaves_ctrl_c_alone():
    code = ("import signal, sys; before = signal.getsignal(signal.SIGINT), sys.excepthook; import toolkit, toolkit.cli, "
            "models, train_cnn, predict; print((signal.getsignal(signal.SIGINT), sys.excepthook) == before)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip() == "True"


# ------------------------------------------------------------------ messages

def test_one_line_reasons_are_cut_at_a_word_and_free_of_terminal_codes():
    long = Exception("\x1b[31merror\x1b[0m " + "word " * 40)
    assert reason_of(long, 30) == "error word word word word word ..."
    assert reason_of(Exception("")) == "Exception"


def test_predict_says_what_each_bad_file_is_and_classifies_the_rest(trained_cnn3, sex_data, tmp_path, capsys):
    (tmp_path / "empty.wav").mkdir()  # a folder with an audio name and nothing inside
    clip = sorted((sex_data / "AudioWAV").iterdir())[0]
    code, out, err = run_stage("predict.py", "--model_file", trained_cnn3 / "cnn3_sex.pt", clip, tmp_path / "empty.wav",
                               tmp_path / "gone.wav", "--out", tmp_path / "p.csv", capsys=capsys)
    one_line_error(code, err, "2 of 3 file(s) could not be classified")
    assert "empty.wav: folder has no audio files" in out
    assert "gone.wav: audio file not found; check the path" in out and "data_preprocessing" not in out
    assert pd.read_csv(tmp_path / "p.csv", keep_default_na=False)["predicted"].tolist()[0] in ("Male", "Female")
    assert "goes after '--'" in importlib.import_module("predict").get_args_parser().format_help()


def test_testing_autoencoder_says_which_flags_it_ignores(capsys):
    import testing_autoencoder

    with pytest.raises(SystemExit):
        testing_autoencoder.main(["--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "--epochs EPOCHS accepted so the seed's commands run; ignored: nothing is trained" in flat
    assert "--learning_rate LEARNING_RATE accepted so the seed's commands run; ignored" in flat


def test_rows_without_a_feature_file_are_reported_and_left_out(sex_data, tmp_path, capsys):
    for s in SPLITS:
        table = pd.read_csv(sex_data / f"sex_{s}.csv")
        table = table.assign(Image_file_path=[resolve_from_csv(p, sex_data / "x.csv") for p in table["Image_file_path"]])
        if s == "train":
            table.loc[:2, "Image_file_path"] = np.nan
        table.to_csv(tmp_path / f"sex_{s}.csv", index=False)
    code, out, err = run_stage("train_cnn.py", "--csv_load_path", tmp_path, "--epochs", "1", "--model_save_path", tmp_path / "m",
                               capsys=capsys)
    assert code == 0, err
    assert "3 row(s) of" in out and "have no Image_file_path and are left out" in out
