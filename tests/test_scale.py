"""The packed feature store (toolkit/features/store.py): stage 2 writes it atomically beside the split CSVs, stage 3
memory-maps it lazily, and a run on it equals a run on the per-clip PNGs exactly."""
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import run_script
from toolkit.config import RECIPES
from toolkit.features.base import PerItem
from toolkit.features.store import StoreRows, open_store, store_files, write_store
from toolkit.training.data import batches, load_split

SPLITS = ("train", "val", "test")


def test_stage2_packs_each_split_beside_its_csv(sex_data):
    for split in SPLITS:
        csv = sex_data / f"sex_{split}.csv"
        store = open_store(csv, "mel")
        assert store is not None
        assert store.rows == pd.read_csv(csv)["Image_file_path"].tolist()
        assert store.dtype == np.uint8 and all(len(s) == 2 and s[0] == 180 for s in store.shapes)
        first = pd.read_csv(csv)["Image_file_path"][0]
        from toolkit.features.mel import read_image

        assert np.array_equal(store.item(0), read_image(str(sex_data / first)))


@pytest.mark.parametrize("recipe", ["default", "seed"])
def test_store_rows_equal_the_png_tensors(sex_data, monkeypatch, recipe):
    config = RECIPES[recipe]
    csv = str(sex_data / "sex_train.csv")
    lazy = load_split(csv, "sex", config)
    assert isinstance(lazy.x, StoreRows)
    monkeypatch.setattr("toolkit.training.data.open_store", lambda *a, **k: None)
    eager = load_split(csv, "sex", config)
    assert torch.equal(lazy.x[:], eager.x) and lazy.x.shape == eager.x.shape
    assert set(lazy.extra) == set(eager.extra)
    for k, values in eager.extra.items():
        if isinstance(values, PerItem):  # the whole images of clips wider than the canvas (None for the others)
            assert [v is None for v in lazy.extra[k]] == [v is None for v in values]
            assert all(np.array_equal(a, b) for a, b in zip(lazy.extra[k], values) if b is not None)
        else:
            assert torch.equal(lazy.extra[k][:], values)
    for (a, ya), (b, yb) in zip(batches(lazy, 16, torch.device("cpu"), torch.Generator().manual_seed(3)),
                                batches(eager, 16, torch.device("cpu"), torch.Generator().manual_seed(3))):
        assert torch.equal(a, b) and torch.equal(ya, yb)


def test_training_on_the_store_equals_training_on_pngs(sex_data, tmp_path):
    pngs = tmp_path / "pngs"  # the same corpus with its stores removed: stage 3 reads the PNGs
    shutil.copytree(sex_data, pngs, ignore=shutil.ignore_patterns("AudioWAV"))
    for split in SPLITS:
        for path in store_files(pngs / f"sex_{split}.csv"):
            os.remove(path)
    results = []
    for folder in (sex_data, pngs):
        out = tmp_path / f"models_{folder.name}"
        run_script("train_cnn.py", "--csv_load_path", folder, "--category", "sex", "--model", "cnn3", "--epochs", "2",
                   "--batch_size", "16", "--threads", "1", "--model_save_path", out, in_process=True)
        metrics = json.loads((out / "cnn3_sex_metrics.json").read_text())
        results.append(([{k: v for k, v in row.items() if k != "seconds"} for row in metrics["history"]],
                        metrics["metrics"]["val"], {k: v for k, v in metrics["metrics"]["test"].items()}))
    assert results[0] == results[1]


def test_a_stale_or_interrupted_store_is_not_used(sex_data, tmp_path, capsys):
    folder = tmp_path / "copy"
    shutil.copytree(sex_data, folder, ignore=shutil.ignore_patterns("AudioWAV"))
    csv = folder / "sex_val.csv"
    table = pd.read_csv(csv)
    table.iloc[:-1].to_csv(csv, index=False)  # edited after stage 2
    assert open_store(csv, "mel") is None
    data = load_split(str(csv), "sex", RECIPES["default"])
    assert not isinstance(data.x, StoreRows) and len(data) == len(table) - 1
    assert "does not match" in capsys.readouterr().out

    def broken():
        yield np.zeros((2, 3), np.uint8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_store(str(csv), "mel", "uint8", ["a", "b"], broken)
    data_file, index_file = store_files(csv)
    assert not os.path.exists(index_file)  # no half store: the old index went first, no new one was written
    assert [n for n in os.listdir(folder) if n.endswith(".tmp.bin")] == []
    assert write_store(str(csv), "mel", "uint8", ["a"], lambda: [np.ones((2, 3), np.uint8)])
    assert not write_store(str(csv), "mel", "uint8", ["a"], lambda: [np.ones((2, 3), np.uint8)])  # current: skipped
    assert open_store(csv, "mel").item(0).tolist() == [[1, 1, 1], [1, 1, 1]]


def test_no_png_writes_only_the_stores_and_trains(sex_data, tmp_path):
    out = tmp_path / "nopng"
    args = ("--load_csv_path", sex_data, "--save_spec_path", out, "--save_csv_path", out, "--category", "sex",
            "--workers", "1", "--no_png")
    tag = next(p.name for p in (sex_data / "mel_spectrograms").iterdir() if p.is_dir())
    killed = out / "mel_spectrograms" / tag / ".unpacked.999999999.abcd"  # what a killed --no_png run leaves
    (killed / "clip.png").parent.mkdir(parents=True)
    (killed / "clip.png").write_bytes(b"half")
    run_script("generate_mel_spectrograms.py", *args, in_process=True)
    assert not killed.exists()
    assert list(out.rglob("*.png")) == [] and [p for p in (out / "mel_spectrograms").rglob("*") if p.is_dir()
                                                 and p.name.startswith(".unpacked")] == []
    stores = {s: open_store(out / f"sex_{s}.csv", "mel") for s in SPLITS}
    assert all(stores.values())
    again = run_script("generate_mel_spectrograms.py", *args, in_process=True)  # a re-run makes nothing and repacks nothing
    assert " 0 to make" in again.stdout and "packed" not in again.stdout
    for s in SPLITS:  # the same values as the PNG run's store
        ref = open_store(sex_data / f"sex_{s}.csv", "mel")
        assert [np.array_equal(ref.item(i), stores[s].item(i)) for i in range(len(ref))] == [True] * len(ref)
    models = tmp_path / "models"
    run_script("train_cnn.py", "--csv_load_path", out, "--category", "sex", "--model", "cnn3", "--epochs", "1",
               "--batch_size", "16", "--threads", "1", "--model_save_path", models, in_process=True)
    assert (models / "cnn3_sex.json").is_file()

    from toolkit.training.data import load_split

    # speaker normalisation changes every image, so it reads them all: from the stores, there being no PNG
    stored, pngs = (load_split(str(d / "sex_train.csv"), "sex", RECIPES["default"], normalize="speaker") for d in (out, sex_data))
    assert stored.x.shape == pngs.x.shape and torch.equal(stored.x, pngs.x) and stored.params == pngs.params


def test_compile_failure_falls_back_to_eager_with_one_line(monkeypatch, capsys):
    from toolkit.training.engine import CompiledOrEager, make_optimizer

    class BackendCompilerFailed(Exception):
        pass

    BackendCompilerFailed.__module__ = "torch._dynamo.exc"  # where torch.compile's own failures come from

    def broken_compile(module, **kwargs):
        def run(*args, **kw):
            raise BackendCompilerFailed("no working C++ compiler\n(long traceback)")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    layer = torch.nn.Linear(3, 2)
    net = CompiledOrEager(layer)
    x = torch.ones(4, 3)
    assert torch.equal(net(x), layer(x)) and torch.equal(net(x), layer(x))
    out = capsys.readouterr().out
    assert out.count("warning: --compile") == 1 and len(out.strip().splitlines()) == 1
    assert not make_optimizer(layer, 1e-3, 0.0).defaults.get("fused")  # fused AdamW only for CUDA parameters


def test_pooled_csvs_and_folds_stay_on_the_store(sex_data, monkeypatch):
    from toolkit.features import subset

    csvs = [str(sex_data / f"sex_{s}.csv") for s in SPLITS]  # cross-validation pools the three CSVs
    lazy = load_split(csvs, "sex", RECIPES["default"])
    fold = subset(lazy, [5, 0, len(lazy) - 1])
    assert isinstance(lazy.x, StoreRows) and isinstance(fold.x, StoreRows)
    monkeypatch.setattr("toolkit.training.data.open_store", lambda *a, **k: None)
    eager = load_split(csvs, "sex", RECIPES["default"])
    assert torch.equal(lazy.x[:], eager.x) and torch.equal(lazy.extra["canvas"][:], eager.extra["canvas"])
    assert torch.equal(fold.x[:], subset(eager, [5, 0, len(eager) - 1]).x)
    assert lazy.paths == eager.paths and lazy.labels.tolist() == eager.labels.tolist()


def test_vector_features_from_the_store_equal_their_npy_files(egemaps_data, monkeypatch):
    csv = str(egemaps_data / "sex_train.csv")
    store = open_store(csv, "egemaps")
    assert store is not None and store.dtype == np.float32 and store.shapes[0].tolist() == [88]
    lazy = load_split(csv, "sex", RECIPES["default"])
    monkeypatch.setattr("toolkit.training.data.open_store", lambda *a, **k: None)
    eager = load_split(csv, "sex", RECIPES["default"])
    assert isinstance(lazy.x, StoreRows) and torch.equal(lazy.x[:], eager.x) and lazy.x.dtype == eager.x.dtype
    assert lazy.feature.input.fit_stats(lazy.x) == eager.feature.input.fit_stats(eager.x)  # the run card's standardisation


@pytest.mark.parametrize("change", [{"dtype": "O"}, {"dtype": "V16"}, {"shapes": "negative"}])
def test_a_store_index_from_elsewhere_with_odd_types_is_not_used(sex_data, tmp_path, change):
    """The index is untrusted input: an object or raw dtype, or a negative shape, means no store (the CSV's
    per-clip files are read instead), never a crash or an object array."""
    csv = tmp_path / "sex_val.csv"
    shutil.copy(sex_data / "sex_val.csv", csv)
    for source, target in zip(store_files(sex_data / "sex_val.csv"), store_files(csv)):
        shutil.copy(source, target)
    assert open_store(csv, "mel") is not None
    index_path = store_files(csv)[1]
    index = json.loads(open(index_path).read())
    if change.get("shapes") == "negative":
        index["shapes"][0] = [-s for s in index["shapes"][0]]  # (-h, -w): the same size, so the length check passes
    else:
        index.update(change)
    with open(index_path, "w") as f:
        json.dump(index, f)
    assert open_store(csv, "mel") is None
