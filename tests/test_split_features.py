"""Split lists and features are joined on clip id: stage 2 adds a second feature type to a folder's split as
{category}_{split}.{type}.csv tables (the split CSVs stay as they are), and the training stages' --features picks the
type; split CSVs that list their features themselves (every earlier version's) read as before."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import run_script
from toolkit.config import RECIPES
from toolkit.errors import ToolkitError
from toolkit.training.data import load_split

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def shared_folder(sex_data, tmp_path_factory):
    """The session's mel split copied to a folder of its own (paths made absolute), then stage 2 --features egemaps
    into the same folder."""
    out = tmp_path_factory.mktemp("shared")
    for split in SPLITS:
        table = pd.read_csv(sex_data / f"sex_{split}.csv")
        for column in ("Image_file_path", "Audio_file_path"):
            table[column] = [str((sex_data / p).resolve()) for p in table[column]]
        table.to_csv(out / f"sex_{split}.csv", index=False)
    shutil.copy(sex_data / "sex_split.json", out / "sex_split.json")
    before = {s: (out / f"sex_{s}.csv").read_bytes() for s in SPLITS}
    proc = run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", out,
                      "--save_csv_path", out, "--category", "sex", "--features", "egemaps", "--workers", "2", in_process=True)
    return out, before, proc


def test_stage2_adds_a_feature_type_to_the_split_of_the_folder(shared_folder):
    out, before, proc = shared_folder
    assert "holds this split already: adding egemaps features to it" in proc.stdout
    assert {s: (out / f"sex_{s}.csv").read_bytes() for s in SPLITS} == before  # the split lists are untouched
    for split in SPLITS:
        clips = pd.read_csv(out / f"sex_{split}.csv")["Audio_file_name"].tolist()
        table = pd.read_csv(out / f"sex_{split}.egemaps.csv")
        assert list(table.columns) == ["Audio_file_name", "egemaps_file_path"] and table["Audio_file_name"].tolist() == clips
        assert (out / f"sex_{split}.egemaps.store.bin").is_file() and (out / f"sex_{split}.egemaps.store.json").is_file()


def test_features_picks_the_type_and_without_it_the_split_csvs_own_is_read(shared_folder, egemaps_data):
    out, _, _ = shared_folder
    csv = str(out / "sex_test.csv")
    mel = load_split(csv, "sex", RECIPES["default"])
    vectors = load_split(csv, "sex", RECIPES["vector"], features="egemaps")
    assert (mel.feature.name, vectors.feature.name) == ("mel", "egemaps")
    assert len(mel) == len(vectors) == len(pd.read_csv(csv)) and list(vectors.input_shape()) == [88]
    assert vectors.labels.tolist() == mel.labels.tolist()  # the same clips in the same order
    # the values are the ones stage 2 makes in a folder of their own, clip by clip
    own = pd.read_csv(egemaps_data / "sex_test.csv").set_index("Audio_file_name")["egemaps_file_path"]
    joined = pd.read_csv(out / "sex_test.egemaps.csv").set_index("Audio_file_name")["egemaps_file_path"]
    clip = joined.index[0]
    assert np.array_equal(np.load(out / joined[clip]), np.load(egemaps_data / own[clip]))


def test_training_on_the_added_type_records_the_same_split(shared_folder, tmp_path):
    out, _, _ = shared_folder
    run_script("train_cnn.py", "--data_dir", out, "--features", "egemaps", "--model", "linear", "--C", "1",
               "--threads", "1", "--model_dir", tmp_path, in_process=True)
    card = json.loads((tmp_path / "linear_sex.json").read_text())
    assert card["features"]["type"] == "egemaps" and card["args"]["features"] == "egemaps"
    assert card["split"]["csvs"]["train"] == str(out / "sex_train.csv") and card["split"]["kind"] == "speaker"
    assert card["metrics"]["test"]["f1"] > 0.5


def test_a_type_the_folder_lacks_is_a_one_line_error(shared_folder, tmp_path):
    out, _, _ = shared_folder
    with pytest.raises(ToolkitError, match=r"--features compare: .*sex_val.csv lists mel features and there is no "
                                           r"sex_val.compare.csv beside it; run generate_mel_spectrograms.py --features "
                                           r"compare with --save_csv_path "):
        load_split(str(out / "sex_val.csv"), "sex", RECIPES["vector"], features="compare")


def test_a_split_list_without_features_of_its_own_asks_for_features(shared_folder, tmp_path):
    out, _, _ = shared_folder
    for split in SPLITS:
        pd.read_csv(out / f"sex_{split}.csv").drop(columns="Image_file_path").to_csv(tmp_path / f"sex_{split}.csv", index=False)
        shutil.copy(out / f"sex_{split}.egemaps.csv", tmp_path / f"sex_{split}.egemaps.csv")
    proc = run_script("train_cnn.py", "--data_dir", tmp_path, "--model", "linear", "--model_dir", tmp_path / "m",
                      check=False, in_process=True)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: {tmp_path / 'sex_train.csv'}: lists no features itself; pass --features egemaps (the features table "
        f"beside it)")


def test_part_of_another_types_split_is_still_refused(sex_data, tmp_path):
    shutil.copy(sex_data / "sex_train.csv", tmp_path / "sex_train.csv")
    proc = run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", tmp_path,
                      "--save_csv_path", tmp_path, "--category", "sex", "--features", "egemaps", check=False,
                      in_process=True)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        "sex_train.csv: holds the mel split of this category, but not all three parts are there; pass another "
        "--save_csv_path for --features egemaps (or delete those CSVs)")
