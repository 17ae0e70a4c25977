"""Stage 2 and predict.py across processes (toolkit/io/shards.py): two torchrun ranks (gloo), or --shard i/N jobs and
a --merge_shards run, write the same files as one process, byte for byte."""
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import ROOT, run_script
from toolkit.features.store import open_store

OUTPUTS = [f"sex_{s}{x}" for s in ("train", "val", "test") for x in (".csv", ".store.bin", ".store.json")] + ["sex_split.json"]


def torchrun(*args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def stage2(corpus, out, *extra, in_process=True, check=True):
    return run_script("generate_mel_spectrograms.py", "--load_csv_path", corpus, "--save_spec_path", out,
                      "--save_csv_path", out, "--category", "sex", "--workers", "1", *extra, in_process=in_process,
                      check=check)


def assert_same_outputs(one, other):
    for name in OUTPUTS:
        assert (one / name).read_bytes() == (other / name).read_bytes(), name


def test_torchrun_stage2_writes_what_one_process_writes(sex_data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    stage2(sex_data, one, "--no_png")  # one process, the store written straight from the workers' results
    proc = torchrun("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", two,
                    "--save_csv_path", two, "--category", "sex", "--workers", "1")  # two ranks, PNGs and stores
    assert proc.stdout.count("wrote ") == 3  # rank 0 alone writes the splits
    assert_same_outputs(one, two)
    folder = one / "mel_spectrograms"
    assert [p.name for p in folder.rglob("*") if p.is_file()] == ["params.json"]  # --no_png: no per-clip file left
    assert not list(two.rglob(".shards")) and not list(one.rglob(".unpacked*"))  # parts merged and removed
    store = open_store(two / "sex_train.csv", "mel")
    pngs = sorted((two / "mel_spectrograms").rglob("*.png"))
    assert len(pngs) == 96 and len(store) == 48
    for i in range(len(store)):  # the PNG pixels are the stored arrays
        png = two / store.rows[i]
        assert np.array_equal(np.asarray(Image.open(png)), store.item(i))


def test_shard_jobs_and_merge_write_what_one_process_writes(sex_data, tmp_path):
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    stage2(sex_data, one, "--no_png")
    for i in range(3):
        proc = stage2(sex_data, sharded, "--no_png", "--shard", f"{i}/3")
        assert f"shard {i}/3 done" in proc.stdout
    assert not (sharded / "sex_train.csv").exists()  # nothing is split before the merge
    merge = stage2(sex_data, sharded, "--no_png", "--merge_shards", "3", check=False)
    assert merge.returncode == 0, merge.stdout + merge.stderr
    assert_same_outputs(one, sharded)
    assert not list(sharded.rglob(".shards"))


def test_merge_names_the_shard_that_is_missing(sex_data, tmp_path):
    stage2(sex_data, tmp_path, "--no_png", "--shard", "0/2")
    proc = stage2(sex_data, tmp_path, "--no_png", "--merge_shards", "2", check=False)
    assert proc.returncode == 2
    assert "shard 1/2 has not finished; run generate_mel_spectrograms.py --shard 1/2 with the same flags first" in proc.stderr
    # a part of another run (other flags) is never merged
    proc = stage2(sex_data, tmp_path, "--merge_shards", "2", check=False)
    assert proc.returncode == 2 and "shard 0/2 has not finished" in proc.stderr
    bad = stage2(sex_data, tmp_path, "--shard", "2/2", check=False)
    assert bad.returncode == 2 and "'2/2': use i/N with 0 <= i < N" in bad.stderr


def test_torchrun_and_shard_predictions_equal_one_process(trained_cnn3, tiny_corpus, tmp_path):
    audio = tiny_corpus / "AudioWAV"
    common = ["--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", audio, "--device", "cpu", "--threads", "1",
              "--workers", "1"]
    run_script("predict.py", *common, "--out", tmp_path / "one.csv", in_process=True)
    torchrun("predict.py", *common, "--out", tmp_path / "two.csv")
    for i in range(2):
        run_script("predict.py", *common, "--out", tmp_path / "shards.csv", "--shard", f"{i}/2", in_process=True)
    merged = run_script("predict.py", *common, "--out", tmp_path / "shards.csv", "--merge_shards", "2", in_process=True)
    assert "classified 96 of 96 file(s)" in merged.stdout
    one = (tmp_path / "one.csv").read_text()
    assert one.count("\n") == 97
    assert (tmp_path / "two.csv").read_text() == one and (tmp_path / "shards.csv").read_text() == one
    assert sorted(os.listdir(tmp_path)) == ["one.csv", "shards.csv", "two.csv"]  # no parts left
    proc = run_script("predict.py", *common, "--shard", "0/2", in_process=True, check=False)
    assert proc.returncode == 2 and "--shard/--merge_shards: pass --out FILE" in proc.stderr
