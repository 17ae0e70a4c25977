import numpy as np
import pandas as pd
import pytest

from toolkit.errors import ToolkitError
from toolkit.io.splits import make_splits


def corpus(n_actors=91, clips=82, seed=0):
    rng = np.random.default_rng(seed)
    sexes = rng.choice(["Male", "Female"], n_actors)
    rows = [{"ActorID": 1001 + a, "sex": sexes[a], "emotion": ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"][c % 6],
             "Audio_file_name": f"{1001 + a}_{c:03d}.wav"} for a in range(n_actors) for c in range(clips)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("label", ["sex", "emotion"])
def test_speaker_split_is_disjoint_and_72_8_20(label):
    df = corpus()
    splits = make_splits(df, label, "speaker", seed=42)
    actors = {k: set(v["ActorID"]) for k, v in splits.items()}
    assert not actors["train"] & actors["val"] and not actors["train"] & actors["test"] and not actors["val"] & actors["test"]
    assert sum(len(v) for v in splits.values()) == len(df)
    for name, target in (("train", 0.72), ("val", 0.08), ("test", 0.20)):
        assert abs(len(splits[name]) / len(df) - target) <= 0.03, name
    # stratified: each split's label mix within 10 points of the whole's
    whole = df[label].value_counts(normalize=True)
    for part in splits.values():
        mix = part[label].value_counts(normalize=True).reindex(whole.index, fill_value=0)
        assert (mix - whole).abs().max() < 0.10


def test_random_split_is_reproducible_and_stratified():
    df = corpus(30, 40)
    a, b = make_splits(df, "sex", "random", 7), make_splits(df, "sex", "random", 7)
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k])
    c = make_splits(df, "sex", "random", 8)
    assert not a["test"]["Audio_file_name"].equals(c["test"]["Audio_file_name"])
    assert abs(len(a["test"]) / len(df) - 0.20) < 0.01 and abs(len(a["val"]) / len(df) - 0.08) < 0.01


def test_speaker_split_is_reproducible():
    df = corpus(20, 10)
    a, b = make_splits(df, "sex", "speaker", 3), make_splits(df, "sex", "speaker", 3)
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k])


def test_too_few_speakers_is_a_clear_error():
    with pytest.raises(ToolkitError, match="at least 3 speakers"):
        make_splits(corpus(2, 20), "sex", "speaker", 42)
