"""Issue 26, family 5 (docs/robustness.md): own-data manifests that are not what they seem, valid input that was
refused, and signals. Each case as a user gives it: a one-line error naming the file, flag and lines (exit status 2,
no traceback, nothing written), or the run it should have been. Stages run in-process (run_stage) unless the process
itself (a signal, a second process) is the point."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT
from test_hostile_input import one_line_error, run_stage
from toolkit.errors import ToolkitError
from toolkit.fileio import exclusive_lock
from toolkit.interrupts import INTERRUPTED


def clips(tiny_corpus: Path, n: int) -> list[str]:
    return sorted(p.name for p in (tiny_corpus / "AudioWAV").iterdir())[:n]


def stage1(tiny_corpus: Path, folder: Path, rows: list[dict], capsys, *flags) -> tuple[int, str, str]:
    """Stage 1 on a manifest of `rows` (file paths relative to the corpus folder) written to folder/meta.csv."""
    folder.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "meta.csv", index=False)
    return run_stage("data_preprocessing.py", "--csv_file", folder / "meta.csv", "--csv_path", folder / "out",
                     "--audio_path", tiny_corpus, "--label_column", "label", *flags, capsys=capsys)


# ------------------------------------------------------------------ speaker IDs

@pytest.mark.parametrize("speakers, message", [
    (["1001", "", "1002", "1002"], "meta.csv: 1 row(s) have no speaker in column 'spk' (--speaker_column), line(s) [3]; "
                                   "fill them in, or leave out --speaker_column to split by clip"),
    (["1001", " ", "", "1002"], "2 row(s) have no speaker in column 'spk' (--speaker_column), line(s) [3, 4]"),
    (["1001", "1001", "anna", "anna"], "column 'spk' (--speaker_column) mixes numbers (1001) and text (anna) as speaker "
                                       "IDs; write every speaker's ID the same way"),
    (["1002", "1002.0", "1003", "1003"], "column 'spk' (--speaker_column) writes one speaker's ID in 2 ways (1002, 1002.0)"),
    (["7", "007", "8", "8"], "writes one speaker's ID in 2 ways (7, 007)"),
], ids=["blank", "blanks and spaces", "numbers and text", "1002 and 1002.0", "7 and 007"])
def test_blank_or_mixed_speaker_ids_are_one_line(tiny_corpus, tmp_path, capsys, speakers, message):
    rows = [{"file": f"AudioWAV/{c}", "label": "ab"[i % 2], "spk": s} for i, (c, s) in enumerate(zip(clips(tiny_corpus, 4), speakers))]
    code, _, err = stage1(tiny_corpus, tmp_path / "d", rows, capsys, "--speaker_column", "spk")
    one_line_error(code, err, message)
    assert not (tmp_path / "d" / "out").exists()


def test_speaker_ids_that_look_like_numbers_stay_as_written(tiny_corpus, tmp_path, capsys):
    """'007' and '7' are not silently one speaker, nor is '007' re-read as 7 by a later stage."""
    rows = [{"file": f"AudioWAV/{c}", "label": "ab"[i % 2], "spk": f"{i // 4:03d}"} for i, c in enumerate(clips(tiny_corpus, 12))]
    code, out, err = stage1(tiny_corpus, tmp_path / "d", rows, capsys, "--speaker_column", "spk")
    assert code == 0, err
    written = pd.read_csv(tmp_path / "d" / "out" / "label_with_audio_path.csv", dtype=str)
    assert sorted(set(written["ActorID"])) == ["000", "001", "002"] and "12 clips from 3 speakers" in out


# ------------------------------------------------------------------ a label column named like a CREMA-D category

@pytest.mark.parametrize("column", ["emotion", "sex", "label"])
def test_an_own_label_column_gets_its_own_classes_whatever_its_name(tiny_corpus, tmp_path, capsys, column):
    """One class is refused (not CREMA-D's six emotions taken instead); two classes are those two, in the card-to-be."""
    files = [f"AudioWAV/{c}" for c in clips(tiny_corpus, 6)]
    pd.DataFrame({"file": files, column: ["sad"] * 6}).to_csv(tmp_path / "one.csv", index=False)
    code, _, err = run_stage("data_preprocessing.py", "--csv_file", tmp_path / "one.csv", "--csv_path", tmp_path / "a",
                             "--audio_path", tiny_corpus, "--label_column", column, capsys=capsys)
    one_line_error(code, err, f"one.csv: '{column}' has only the class ['sad']; a classifier needs two or more")
    assert not (tmp_path / "a").exists()
    pd.DataFrame({"file": files, column: ["sad", "calm"] * 3}).to_csv(tmp_path / "two.csv", index=False)
    code, _, err = run_stage("data_preprocessing.py", "--csv_file", tmp_path / "two.csv", "--csv_path", tmp_path / "b",
                             "--audio_path", tiny_corpus, "--label_column", column, capsys=capsys)
    assert code == 0, err
    assert sorted(json.loads((tmp_path / "b" / f"{column}_with_audio_path.json").read_text())["classes"]) == ["calm", "sad"]


# ------------------------------------------------------------------ entries named like clips that are not files

NOT_FILES = {"fifo": os.mkfifo, "folder": os.mkdir, "broken link": lambda p: os.symlink(p.parent / "gone.wav", p)}


@pytest.mark.parametrize("layout, kind", [("CREMA-D", kind) for kind in NOT_FILES] + [("class folders", "fifo"),
                                          ("class folders", "broken link")])  # there a folder is a speaker's
def test_an_entry_named_like_a_clip_that_is_not_a_file_is_reported(tiny_corpus, tmp_path, capsys, kind, layout):
    """Left out unopened (a FIFO would block for ever), and said so with its name: never dropped without a word."""
    if layout == "CREMA-D":
        audio = tmp_path / "AudioWAV"
        shutil.copytree(tiny_corpus / "AudioWAV", audio)
        odd = audio / "1001_IEO_ANG_XX.wav"
        flags = ["--csv_file", tiny_corpus / "VideoDemographics.csv", "--category", "sex"]
        report = "1 entry(ies) of the audio folder left out: named like audio but not a regular file"
    else:
        audio = tmp_path / "root"
        for i, wav in enumerate(clips(tiny_corpus, 8)):
            (audio / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
            os.symlink(tiny_corpus / "AudioWAV" / wav, audio / "ab"[i % 2] / wav)
        odd = audio / "a" / "odd.wav"
        flags = ["--from_folders", "--label_column", "voice"]
        report = "1 file(s) below the class folders left out: named like audio but not a regular file"
    NOT_FILES[kind](odd)
    code, out, err = run_stage("data_preprocessing.py", "--audio_path", audio, "--csv_path", tmp_path / "out", *flags,
                               capsys=capsys)
    assert code == 0, err
    assert report in out + err and f"e.g. {odd.name if layout == 'CREMA-D' else 'a/odd.wav'}" in out + err
    written = pd.read_csv(next((tmp_path / "out").glob("*_with_audio_path.csv")))
    assert len(written) == (96 if layout == "CREMA-D" else 8) and odd.name not in set(written["Audio_file_name"])


# ------------------------------------------------------------------ one file, two spellings

SPELLINGS = ["AudioWAV/{}", "./AudioWAV/{}", "AudioWAV/../AudioWAV/{}", "AudioWAV//{}"]


@pytest.mark.parametrize("spelling", SPELLINGS[1:], ids=["./x.wav", "a/../x.wav", "double slash"])
def test_one_file_under_two_spellings_is_one_clip(tiny_corpus, tmp_path, capsys, spelling):
    names = clips(tiny_corpus, 6)
    rows = [{"file": SPELLINGS[0].format(c), "label": "ab"[i % 2]} for i, c in enumerate(names)]
    rows.append({"file": spelling.format(names[0]), "label": "a"})  # the first clip again, the same label
    code, out, err = stage1(tiny_corpus, tmp_path / "d", rows, capsys)
    assert code == 0, err
    assert "1 clip(s) are listed more than once with the same values" in out and "each is used once" in out
    written = pd.read_csv(tmp_path / "d" / "out" / "label_with_audio_path.csv")
    assert len(written) == 6 and written["Audio_file_path"].map(os.path.basename).is_unique

    rows[-1]["label"] = "b"  # ... and with another label: which one is true is the user's call
    code, _, err = stage1(tiny_corpus, tmp_path / "e", rows, capsys)
    one_line_error(code, err, "meta.csv: 1 clip(s) have rows that disagree, e.g. Audio_file_path",
                   f"AudioWAV/{names[0]}; keep one row per clip")
    assert not (tmp_path / "e" / "out").exists()


def test_a_link_to_a_listed_file_is_the_same_clip(tiny_corpus, tmp_path, capsys):
    names = clips(tiny_corpus, 6)
    (tmp_path / "d").mkdir()
    os.symlink(tiny_corpus / "AudioWAV" / names[0], tmp_path / "d" / "again.wav")
    rows = [{"file": f"AudioWAV/{c}", "label": "ab"[i % 2]} for i, c in enumerate(names)] + \
           [{"file": str(tmp_path / "d" / "again.wav"), "label": "a"}]
    code, out, err = stage1(tiny_corpus, tmp_path / "d", rows, capsys)
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "d" / "out" / "label_with_audio_path.csv")) == 6


# ------------------------------------------------------------------ class names that look like numbers

def test_class_folders_named_like_numbers_keep_their_names_through_stages_1_to_3(tiny_corpus, sex_data, tmp_path, capsys):
    """'01' and '1' are two classes (pandas would read both as 1), and stage 2 takes stage 1's output as it is."""
    actors = pd.read_csv(tiny_corpus / "VideoDemographics.csv").set_index("ActorID")
    for wav in sorted((tiny_corpus / "AudioWAV").iterdir()):
        label = {"Male": "01", "Female": "1"}[actors.loc[int(wav.name[:4]), "Sex"]]
        target = tmp_path / "root" / label / f"{wav.name[:4]}" / wav.name  # speakers named like numbers too
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(wav, target)
    data = tmp_path / "data"
    code, _, err = run_stage("data_preprocessing.py", "--from_folders", "--audio_path", tmp_path / "root",
                             "--label_column", "voice", "--csv_path", data, capsys=capsys)
    assert code == 0, err
    assert json.loads((data / "voice_with_audio_path.json").read_text())["classes"] == ["01", "1"]
    code, _, err = run_stage("generate_mel_spectrograms.py", "--load_csv_path", data, "--save_spec_path", sex_data,
                             "--save_csv_path", data, "--category", "voice", "--workers", "1", capsys=capsys)
    assert code == 0, err  # the images are the session corpus's (same audio, same parameters): none is made again
    assert json.loads((data / "voice_split.json").read_text())["classes"] == ["01", "1"]
    split = pd.concat(pd.read_csv(data / f"voice_{s}.csv", dtype=str) for s in ("train", "val", "test"))
    assert sorted(set(split["voice"])) == ["01", "1"] and split["ActorID"].nunique() == 8
    code, out, err = run_stage("train_cnn.py", "--csv_load_path", data, "--category", "voice", "--epochs", "1",
                               "--batch_size", "32", "--threads", "1", "--model_save_path", data / "m", capsys=capsys)
    assert code == 0, err
    card = json.loads((data / "m" / "cnn3_voice.json").read_text())
    assert card["classes"] == ["01", "1"] and card["metrics"]["test"]["accuracy"] >= 0


# ------------------------------------------------------------------ stage 5: a run too short for the ramp

def test_stage5_defaults_run_with_one_epoch_on_16_unlabeled_clips(trained_cnn3, sex_data, tmp_path, capsys):
    """The default ramp (0% to 50% of the run) of a one-step run: T1 = T2 = 0, the weight is --af from the start
    (not a division by zero, not a refusal, not a weight of 0 that would make the stage a no-op)."""
    for name in ("cnn3_sex.pt", "cnn3_sex.json"):
        shutil.copy(trained_cnn3 / name, tmp_path / name)
    test = pd.read_csv(sex_data / "sex_test.csv")
    unlabeled = pd.DataFrame({"Image_file_path": [str((sex_data / p).resolve()) for p in test["Image_file_path"][:16]]})
    unlabeled.to_csv(tmp_path / "unlabeled.csv", index=False)
    code, out, err = run_stage("pseudo_labeling_semisupervised.py", "--csv_load_path", sex_data, "--unlabeled_csv",
                               tmp_path / "unlabeled.csv", "--epochs", "1", "--batch_size", "16", "--model_dir", tmp_path,
                               "--threads", "1", "--workers", "1", capsys=capsys)
    assert code == 0, err
    assert "pseudo-label weight: 0.5 from step 0 (the run has 1 step(s): too few for a ramp)" in out
    history = pd.read_csv(tmp_path / "cnn3_sex_PL_metrics.csv")
    assert history["alpha"].tolist() == [0.5] and history["pseudo_used"].tolist() == [16]
    settings = json.loads((tmp_path / "cnn3_sex_PL.json").read_text())["training"]["pseudo_labeling"]
    assert (settings["T1"], settings["T2"], settings["T1_given"], settings["T2_given"]) == (0, 0, "0%", "50%")


@pytest.mark.parametrize("field, value, message", [
    ("metrics", [], "field 'metrics' input should be a valid dictionary (got [])"),
    ("init_detail", [], "field 'init_detail' input should be a valid dictionary (got [])"),
    ("split", "x", "field 'split' input should be a valid dictionary (got 'x')"),
    ("classes", "Male", "field 'classes' input should be a valid list (got 'Male')"),
], ids=["metrics list", "init detail list", "split text", "classes text"])
def test_stage5_refuses_a_starting_card_that_breaks_its_schema(trained_cnn3, sex_data, tmp_path, capsys, field, value, message):
    shutil.copy(trained_cnn3 / "cnn3_sex.pt", tmp_path)
    card = json.loads((trained_cnn3 / "cnn3_sex.json").read_text())
    (tmp_path / "cnn3_sex.json").write_text(json.dumps({**card, field: value}))
    code, _, err = run_stage("pseudo_labeling_semisupervised.py", "--csv_load_path", sex_data, "--unlabeled_csv",
                             sex_data / "sex_test.csv", "--epochs", "1", "--model_dir", tmp_path, "--threads", "1",
                             "--workers", "1", capsys=capsys)
    one_line_error(code, err, "cnn3_sex.json: run card: " + message, "; restore the file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn3_sex.json", "cnn3_sex.pt"]


def test_stage5_still_refuses_a_T2_before_T1(trained_cnn3, sex_data, tmp_path, capsys):
    for name in ("cnn3_sex.pt", "cnn3_sex.json"):
        shutil.copy(trained_cnn3 / name, tmp_path / name)
    code, _, err = run_stage("pseudo_labeling_semisupervised.py", "--csv_load_path", sex_data, "--unlabeled_csv",
                             sex_data / "sex_test.csv", "--epochs", "1", "--T1", "5", "--T2", "2", "--model_dir", tmp_path,
                             "--threads", "1", "--workers", "1", capsys=capsys)
    one_line_error(code, err, "--T1 5 and --T2 2 are steps 5 and 2 of this run's 1: T2 must not come earlier")
    assert not (tmp_path / "cnn3_sex_PL.pt").exists()


# ------------------------------------------------------------------ SIGTERM in a stage's first second

# `python script.py ...`, but the process gets SIGTERM (kill, timeout, a scheduler) the moment the named module
# starts to import: a chosen point of the first second, whatever the machine's speed.
SIGTERM_AT_IMPORT = """
import os, runpy, signal, sys
module, script = sys.argv[1:3]
class Term:
    def find_spec(self, name, path=None, target=None):
        if name == module:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
        return None
sys.meta_path.insert(0, Term())
sys.argv = sys.argv[2:]
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("script, module", [("train_cnn.py", "numpy"), ("train_cnn.py", "torch"),
                                            ("generate_mel_spectrograms.py", "pandas")])
def test_sigterm_in_the_first_second_is_exit_130_and_one_line(tmp_path, script, module):
    proc = subprocess.run([sys.executable, "-c", SIGTERM_AT_IMPORT, module, str(ROOT / script), "--csv_load_path", tmp_path,
                           "--load_csv_path", tmp_path, "--model_save_path", tmp_path / "out", "--save_csv_path",
                           tmp_path / "out"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr, proc.stdout) == (130, INTERRUPTED + "\n", "")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ torchrun: one rank fails, the other follows

# `script ...` with its validation failing on rank 1 only (a ToolkitError: its one line), at the end of epoch 1
FAIL_ON_RANK_1 = """
import os, runpy, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import toolkit.training.engine as engine
from toolkit.errors import ToolkitError
real = engine.metrics_of
CARD = os.path.join(sys.argv[sys.argv.index("--model_save_path") + 1], "cnn3_sex.json")
def metrics_of(*args, **kwargs):
    if os.environ["RANK"] == "1" and os.path.exists(CARD):  # once rank 0 has saved epoch 1, whatever the import order
        raise ToolkitError("rank 1 cannot go on")
    return real(*args, **kwargs)
engine.metrics_of = metrics_of
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_under_torchrun_the_rank_whose_peer_failed_says_one_line_not_a_traceback(sex_data, tmp_path):
    """Rank 0 is in a later epoch's collectives when rank 1 fails: gloo's 'Connection closed by peer' is one line
    naming what happened, not a traceback (torchrun's own failure report after them is the launcher's)."""
    (tmp_path / "fail_on_rank_1.py").write_text(FAIL_ON_RANK_1)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                           str(tmp_path / "fail_on_rank_1.py"), str(ROOT / "train_cnn.py"), "--csv_load_path", sex_data,
                           "--epochs", "3", "--batch_size", "16", "--threads", "1", "--device", "cpu",
                           "--model_save_path", tmp_path / "m"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and text.count("error: rank 1 cannot go on\n") == 1, text[-3000:]
    followed = "error: rank 0: another process of this torchrun run stopped (its error says why), so this one stops too"
    assert followed in text or INTERRUPTED in text, text[-3000:]  # or torchrun's SIGTERM reached rank 0 first
    assert "RuntimeError" not in text and str(ROOT / "toolkit") not in text, text[-3000:]  # no frame of a rank's code
    card = json.loads((tmp_path / "m" / "cnn3_sex.json").read_text())  # epoch 1, kept as an interrupted run's
    assert card["complete"] is False and (tmp_path / "m" / "cnn3_sex_last.pt").exists()


# ------------------------------------------------------------------ two runs into one folder at once

def test_a_run_whose_lock_file_is_still_empty_is_not_taken_for_a_dead_one(sex_data, tmp_path, capsys):
    """The window between a run creating its lock file and writing its PID there: the file is empty, but the run
    is alive and holds it. A second run stops at once (it took an empty file for a dead run's)."""
    fd = os.open(tmp_path / "cnn3_sex.lock", os.O_RDWR | os.O_CREAT)
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)  # what the first run holds from its first instant, before the PID is written
    try:
        code, _, err = run_stage("train_cnn.py", "--csv_load_path", sex_data, "--epochs", "1", "--threads", "1",
                                 "--model_save_path", tmp_path, capsys=capsys)
    finally:
        os.close(fd)
    one_line_error(code, err, f"cnn3_sex.lock: another run (process starting up) is writing cnn3_sex in {tmp_path}; "
                              "wait for it to finish, or pass another output folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn3_sex.lock"]  # the holder's file, left to it


def _take_the_lock(path: str, start, holders, most, refusals) -> None:
    """One of several processes that ask for the same lock at the same moment, 20 times each."""
    start.wait()
    for _ in range(20):
        try:
            with exclusive_lock(path, "x"):
                with holders.get_lock():
                    holders.value += 1
                    most.value = max(most.value, holders.value)
                time.sleep(0.002)
                with holders.get_lock():
                    holders.value -= 1
        except ToolkitError as e:
            assert str(e).startswith(f"{path}: another run (process ") and "\n" not in str(e)
            with refusals.get_lock():
                refusals.value += 1


def test_processes_starting_at_once_never_hold_the_lock_together(tmp_path):
    context = multiprocessing.get_context("fork")
    start, holders, most, refusals = context.Event(), context.Value("i", 0), context.Value("i", 0), context.Value("i", 0)
    path = str(tmp_path / "run.lock")
    workers = [context.Process(target=_take_the_lock, args=(path, start, holders, most, refusals)) for _ in range(6)]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0] * 6
    assert most.value == 1 and refusals.value > 0 and holders.value == 0
    assert not os.path.exists(path)  # the last holder removed it
