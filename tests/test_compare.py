"""ComParE 2016 features (--features compare): 6,373 openSMILE functionals per clip through stage 2, the packed store
and stage 3, on a corpus of 24 clips (openSMILE takes ~0.1 s of CPU a clip)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from toolkit.config import RECIPES
from toolkit.features import FEATURES, Compare, Egemaps
from toolkit.features.compare import CompareParams
from toolkit.features.smile import smile
from toolkit.features.store import StoreRows, open_store
from toolkit.training.data import load_split

from test_egemaps import run_script, voice  # the stage in-process; a harmonic voice of a given pitch


def test_extract_gives_the_6373_functionals_of_the_challenge_set():
    low, high = (Compare(CompareParams()).extract(voice(f0)) for f0 in (110, 220))
    assert low.shape == (6373,) and low.dtype == np.float32 and np.isfinite(low).all()
    f0_mean = smile("ComParE_2016").feature_names.index("F0final_sma_amean")  # in Hz
    assert high[f0_mean] / low[f0_mean] == pytest.approx(2, rel=0.05)
    assert FEATURES["compare"] is Compare and Compare().kind == Egemaps().kind == "vector"
    assert CompareParams().tag().startswith("compare_2016_sr16000_")  # its own folder, never eGeMAPS'


def own_label_features(tiny_corpus, out, feature: str, label: str = "gender", per_speaker: int | None = 3):
    """Stages 1-2 with --features FEATURE on the session's corpus as own data (its sex column named `label`; the
    first `per_speaker` clips of each of its 8 speakers, or all); returns `out`."""
    clips = pd.read_csv(tiny_corpus / "clips.csv")
    clips = (clips.groupby("speaker").head(per_speaker) if per_speaker else clips).rename(columns={"sex": label})
    clips["file"] = [str((tiny_corpus / f).resolve()) for f in clips["file"]]
    clips.to_csv(out / "clips.csv", index=False)
    run_script("data_preprocessing.py", "--csv_file", out / "clips.csv", "--audio_column", "file", "--label_column", label,
               "--speaker_column", "speaker", "--data_dir", out)
    run_script("generate_mel_spectrograms.py", "--load_csv_path", out, "--save_spec_path", out, "--save_csv_path", out,
               "--category", label, "--features", feature, "--workers", "2")
    return out


@pytest.fixture(scope="module")
def compare_data(tiny_corpus, tmp_path_factory):
    """Stages 1-2 with --features compare on 8 speakers × 3 clips of the session's corpus (own labels: male, female)."""
    return own_label_features(tiny_corpus, tmp_path_factory.mktemp("compare"), "compare")


def test_stage2_writes_6373_finite_values_per_clip_and_the_store_holds_the_same(compare_data):
    tables = {s: pd.read_csv(compare_data / f"gender_{s}.csv") for s in ("train", "val", "test")}
    assert sum(map(len, tables.values())) == 24 and all("compare_file_path" in t.columns for t in tables.values())
    files = [Compare().storage.read(str(compare_data / p)) for p in tables["train"]["compare_file_path"]]
    assert all(f.shape == (6373,) and np.isfinite(f).all() for f in files)
    params = json.loads(next((compare_data / "compare").glob("*/params.json")).read_text())
    assert params == {"sr": 16000, "feature_set": "ComParE_2016"}
    csv = str(compare_data / "gender_train.csv")
    store = open_store(csv, "compare")
    assert store is not None and store.dtype == np.float32 and store.shapes[0].tolist() == [6373]
    lazy = load_split(csv, "gender", RECIPES["default"])
    assert isinstance(lazy.x, StoreRows) and torch.equal(lazy.x[:], torch.from_numpy(np.stack(files)))


def test_a_linear_head_learns_the_speakers_sex_from_compare_above_chance(compare_data, tmp_path):
    run_script("train_cnn.py", "--csv_load_path", compare_data, "--category", "gender", "--model", "linear", "--C", "1", "--threads", "1",
               "--model_save_path", tmp_path)
    card = json.loads((tmp_path / "linear_gender.json").read_text())
    assert card["features"]["type"] == "compare" and card["input"] == {"kind": "vector", "shape": [6373]}
    assert card["metrics"]["test"]["accuracy"] > 0.75  # chance 0.5 (sex is audible in pitch, formants, MFCCs)
