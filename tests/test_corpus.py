"""Stage 1 logic, checked against the real CREMA-D metadata when ../shared/crema-d/ is present."""
import pandas as pd
import pytest

from conftest import SHARED_CREMA_D
from toolkit.io.corpus import clips_from_names, parse_clip_name
from toolkit.io.labels import age_bin


def test_parse_clip_name():
    assert parse_clip_name("1001_DFA_ANG_XX.wav") == {"ActorID": 1001, "Sentence": "DFA", "emotion": "ANG", "Level": "XX"}
    assert parse_clip_name("notes.txt") is None


@pytest.mark.parametrize("age, group", [(20, "<30s"), (29, "<30s"), (30, "30s"), (49, "40s"), (59, "50s"), (60, ">60s"), (74, ">60s")])
def test_age_bins(age, group):
    assert age_bin(age) == group


@pytest.mark.skipif(not SHARED_CREMA_D.exists(), reason="../shared/crema-d not present")
def test_real_metadata_gives_the_real_counts():
    demographics = pd.read_csv(SHARED_CREMA_D / "VideoDemographics.csv")
    names = [line.split()[0] for line in (SHARED_CREMA_D / "AudioWAV-sizes.txt").read_text().splitlines() if line.strip()]
    clips, reports = clips_from_names(names, demographics)
    assert reports == []
    assert len(clips) == 7442 and clips["ActorID"].nunique() == 91
    assert clips["sex"].value_counts().to_dict() == {"Male": 3930, "Female": 3512}
    assert (clips["race"] == "Unknown").sum() == 82
    assert clips["age"].value_counts().to_dict() == {"<30s": 2774, "30s": 1886, "40s": 1306, "50s": 984, ">60s": 492}
    assert set(clips["emotion"]) == {"ANG", "DIS", "FEA", "HAP", "NEU", "SAD"}
