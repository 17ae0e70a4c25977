"""The embedded demo corpus (make_demo_data.py, demo/synth.py): layout, format, reproducibility, voices."""
from __future__ import annotations

import collections
import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import make_demo_data
from demo import synth

REAL = Path(__file__).resolve().parents[2] / "shared" / "crema-d"
CLIP = re.compile(r"^(\d{4})_(IEO|TIE|IOM|IWW|TAI|MTI|IWL|ITH|DFA|ITS|TSI|WSI)_(ANG|DIS|FEA|HAP|NEU|SAD)_(LO|MD|HI|XX)\.wav$")
ARGS = ["--actors", "4", "--clips_per_actor", "6", "--seed", "3", "--quiet"]


def age_group(age: int) -> str:
    return "<30s" if age <= 29 else ">60s" if age >= 60 else f"{age // 10 * 10}s"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    make_demo_data.main(["--out", str(out), "--workers", "1", "--unlabeled_actors", "2", *ARGS])
    return out


def wav_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".wav")


def test_clip_names_follow_crema_d(corpus):
    names = wav_names(corpus / "AudioWAV")
    assert len(names) == 4 * 6
    assert all(CLIP.match(n) for n in names), names
    by_actor = collections.defaultdict(set)
    for n in names:
        by_actor[int(n[:4])].add(n.split("_")[2])
    assert sorted(by_actor) == [1001, 1002, 1003, 1004]
    assert all(emotions == set(synth.EMOTIONS) for emotions in by_actor.values())  # 6 clips: one per emotion
    assert not [p for p in (corpus / "AudioWAV").iterdir() if p.name.startswith(".")]  # no temp files left


def test_wavs_are_16k_mono_pcm16_of_crema_d_length(corpus):
    for name in wav_names(corpus / "AudioWAV"):
        info = sf.info(str(corpus / "AudioWAV" / name))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "WAV", "PCM_16")
        assert 1.3 <= info.frames / info.samplerate <= 5.0
        audio, _ = sf.read(str(corpus / "AudioWAV" / name), dtype="int16")
        assert np.abs(audio).max() > 1000  # not silent


def test_demographics_csv_is_quoted_like_the_real_one(corpus):
    lines = (corpus / "VideoDemographics.csv").read_text().splitlines()
    assert lines[0] == '"ActorID","Age","Sex","Race","Ethnicity"'
    row = re.compile(r'^\d{4},\d{2},"(Male|Female)","(Caucasian|African American|Asian|Unknown)","(Hispanic|Not Hispanic)"$')
    assert len(lines) == 5 and all(row.match(line) for line in lines[1:]), lines
    if (REAL / "VideoDemographics.csv").exists():  # same header bytes as CREMA-D's own file
        assert (REAL / "VideoDemographics.csv").read_text().splitlines()[0] == lines[0]


def test_same_seed_same_bytes_any_worker_count(corpus, tmp_path):
    again = tmp_path / "again"
    make_demo_data.main(["--out", str(again), "--workers", "2", *ARGS])
    names = wav_names(corpus / "AudioWAV")
    assert wav_names(again / "AudioWAV") == names
    for name in names:
        assert (again / "AudioWAV" / name).read_bytes() == (corpus / "AudioWAV" / name).read_bytes(), name
    assert (again / "VideoDemographics.csv").read_bytes() == (corpus / "VideoDemographics.csv").read_bytes()

    other = tmp_path / "other"
    make_demo_data.main(["--out", str(other), "--workers", "1", *ARGS[:-3], "--seed", "4", "--quiet"])
    name = wav_names(other / "AudioWAV")[0]
    assert name not in names or (other / "AudioWAV" / name).read_bytes() != (corpus / "AudioWAV" / name).read_bytes()


def test_rerun_skips_existing_wavs(corpus, capsys):
    before = {n: os.stat(corpus / "AudioWAV" / n).st_mtime_ns for n in wav_names(corpus / "AudioWAV")}
    make_demo_data.main(["--out", str(corpus), "--workers", "1", "--unlabeled_actors", "2", *ARGS])
    assert " 0 clips written" in capsys.readouterr().out
    assert before == {n: os.stat(corpus / "AudioWAV" / n).st_mtime_ns for n in wav_names(corpus / "AudioWAV")}


def test_unlabeled_csv_lists_existing_files_without_labels(corpus):
    with open(corpus / "unlabeled.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["Audio_file_path", "Audio_file_name"]
    assert len(rows) == 2 * 6
    for row in rows:
        path = corpus / row["Audio_file_path"]
        assert path.is_file() and path.name == row["Audio_file_name"]
        assert path.parent == corpus / "Unlabeled" / "AudioWAV"
        assert re.match(r"^20\d\d_\d{3}\.wav$", row["Audio_file_name"])  # speaker only: no emotion in the name
    assert not (set(wav_names(corpus / "AudioWAV")) & {r["Audio_file_name"] for r in rows})


def test_male_voices_are_lower_than_female(corpus):
    import librosa

    sexes = {int(r["ActorID"]): r["Sex"] for r in csv.DictReader(open(corpus / "VideoDemographics.csv"))}
    f0 = collections.defaultdict(list)
    for name in wav_names(corpus / "AudioWAV"):
        y, sr = sf.read(str(corpus / "AudioWAV" / name), dtype="float32")
        pitch = librosa.yin(y, fmin=60, fmax=500, sr=sr, frame_length=1024)
        energy = librosa.feature.rms(y=y, frame_length=1024, hop_length=256)[0][: len(pitch)]
        f0[sexes[int(name[:4])]].append(np.median(pitch[: len(energy)][energy > 0.3 * energy.max()]))
    assert len(f0["Male"]) >= 6 and len(f0["Female"]) >= 6
    assert np.mean(f0["Female"]) > 1.3 * np.mean(f0["Male"]), {k: np.round(v) for k, v in f0.items()}


def test_every_actor_has_crema_d_clip_set():
    names = synth.clip_names(1001)
    assert len(names) == len(set(names)) == 82
    assert sum(n.split("_")[1] == "IEO" for n in names) == 16  # NEU_XX + 5 emotions x LO/MD/HI
    if (REAL / "SentenceFilenames.csv").exists():
        real = {r["Filename"] for r in csv.DictReader(open(REAL / "SentenceFilenames.csv")) if r["Filename"].startswith("1001_")}
        assert set(names) == real
    subset = synth.choose_clips(1001, 12, seed=0)
    assert collections.Counter(n.split("_")[2] for n in subset) == {e: 2 for e in synth.EMOTIONS}
    assert subset == synth.choose_clips(1001, 12, seed=0) and set(subset) <= set(names)


def test_default_demographics_cover_every_sex_and_age_group():
    actors = synth.draw_demographics(30, 1001, seed=0)
    assert [a["ActorID"] for a in actors] == list(range(1001, 1031))
    sexes = collections.Counter(a["Sex"] for a in actors)
    ages = collections.Counter(age_group(a["Age"]) for a in actors)
    assert min(sexes["Male"], sexes["Female"]) >= 2 and sexes["Male"] >= sexes["Female"]
    assert set(ages) == {"<30s", "30s", "40s", "50s", ">60s"} and min(ages.values()) >= 2
    assert ages["<30s"] + ages["30s"] > 15 and all(20 <= a["Age"] <= 74 for a in actors)
    races = collections.Counter(a["Race"] for a in actors)
    assert races.most_common(1)[0][0] == "Caucasian" and set(races) <= {"Caucasian", "African American", "Asian", "Unknown"}


def test_unseen_voices_get_their_own_ids_and_lie_beyond_the_training_ranges(tmp_path):
    make_demo_data.main(["--out", str(tmp_path), "--actors", "2", "--clips_per_actor", "1", "--voices", "unseen",
                         "--workers", "1", "--quiet"])
    assert [n[:4] for n in wav_names(tmp_path / "AudioWAV")] == ["3001", "3002"]
    standard = synth.VOICE_SETTINGS["standard"]
    for sex, male in (("Male", True), ("Female", False)):
        for actor_id in range(3001, 3021):
            actor = dict(ActorID=actor_id, Age=30, Sex=sex, Race="Asian", Ethnicity="Not Hispanic")
            voice = synth.make_voice(actor, 0, "unseen")
            assert voice.pulse != "rosenberg" and voice.noise_db > standard["noise_db"][1]
            # Each sex moves away from the other: lower and longer for men, higher and shorter for women.
            if male:
                assert voice.f0 < standard["f0"][True][0] and voice.formant_scale < standard["formant_scale"][True][1]
            else:
                assert voice.f0 > standard["f0"][False][0] + 60 and voice.formant_scale > standard["formant_scale"][False][0]
        boundary = synth.make_voice(dict(actor, ActorID=5001), 0, "boundary")
        assert (130 <= boundary.f0 <= 160) if male else (145 <= boundary.f0 <= 180)


# ----------------------------------------------------------------------------- the 'wide' unseen-voice families

def band_share(y: np.ndarray, lo: float, hi: float) -> float:
    """Share of the clip's energy between lo and hi Hz."""
    power = np.abs(np.fft.rfft(y)) ** 2
    hz = np.fft.rfftfreq(len(y), 1 / synth.SR)
    return float(power[(hz >= lo) & (hz < hi)].sum() / power.sum())


def periodicity(y: np.ndarray, part: str = "all") -> float:
    """Mean normalised autocorrelation peak (lags 2-20 ms) over voiced 40 ms frames (1 = perfectly periodic):
    breath noise and irregular pulses lower it. part='late': only the last 40% of the spoken span."""
    frames = np.lib.stride_tricks.sliding_window_view(y, 640)[::320]
    energy = (frames**2).mean(1)
    on = np.nonzero(energy > 0.01 * energy.max())[0]
    keep = np.zeros(len(frames), bool)
    keep[on[0] + (int(0.6 * (on[-1] - on[0])) if part == "late" else 0): on[-1]] = True
    peaks = []
    for x in frames[keep & (energy > 0.01 * energy.max())]:
        x = x - x.mean()
        ac = np.correlate(x, x, "full")[len(x) - 1:]
        peaks.append(ac[32:320].max() / ac[0])
    return float(np.mean(peaks))


def family_voices(sex: str, family: str, actor_id: int = 7001) -> tuple[synth.Voice, synth.Voice]:
    """The same 'wide' speaker without and with one family (the same pulse: one rng seed for both)."""
    actor = dict(ActorID=actor_id, Age=30, Sex=sex, Race="Caucasian", Ethnicity="Not Hispanic")
    base = synth.make_voice(actor, 0, "wide")
    return (synth.apply_families(base, (), np.random.default_rng(5)),
            synth.apply_families(base, (family,), np.random.default_rng(5)))


def say(voice: synth.Voice, sentence: str = "TIE", emotion: str = "NEU") -> np.ndarray:
    return synth.synthesize(voice, sentence, emotion, "XX", np.random.default_rng(9)).astype(np.float64)


def test_wide_voices_get_their_own_ids_and_families_balanced_over_sex(tmp_path):
    make_demo_data.main(["--out", str(tmp_path), "--actors", "2", "--clips_per_actor", "1", "--voices", "wide",
                         "--workers", "1", "--quiet"])
    assert [n[:4] for n in wav_names(tmp_path / "AudioWAV")] == ["7001", "7002"]
    rows = list(csv.DictReader(open(tmp_path / "voice_families.csv")))
    assert [r["ActorID"] for r in rows] == ["7001", "7002"] and {r["Sex"] for r in rows} == {"Male", "Female"}
    assert all(r["families"] in synth.VOICE_FAMILIES for r in rows)  # the first of each sex: one family

    actors = synth.draw_demographics(48, synth.FIRST_ID["wide", False], 1, male_share=0.5)
    families = synth.wide_families(actors)
    counts = collections.Counter((a["Sex"], f) for a in actors for f in families[a["ActorID"]])
    assert set(counts.values()) == {5} and len(counts) == 2 * len(synth.VOICE_FAMILIES)  # 24 + 24 speakers
    assert all(len(set(families[a["ActorID"]]) & set(synth.PHONATIONS)) <= 1 for a in actors)
    assert synth.draw_demographics(30, 1001, 0) == synth.draw_demographics(30, 1001, 0, synth.MALE_SHARE)
    with pytest.raises(ValueError, match="unknown voice families"):
        synth.apply_families(synth.make_voice(actors[0], 0, "wide"), ("whisper",), np.random.default_rng(0))


@pytest.mark.parametrize("sex", ["Male", "Female"])
def test_breathy_voice_has_more_noise_between_harmonics_and_a_stronger_fundamental(sex):
    modal, breathy = (say(v) for v in family_voices(sex, "breathy"))
    assert periodicity(breathy) < periodicity(modal) - 0.08
    f0 = family_voices(sex, "breathy")[1].f0
    assert band_share(breathy, 0.5 * f0, 1.5 * f0) > 1.3 * band_share(modal, 0.5 * f0, 1.5 * f0)  # H1 dominates
    assert band_share(breathy, 3600, 8000) > 2 * band_share(modal, 3600, 8000)  # aspiration hiss


@pytest.mark.parametrize("sex", ["Male", "Female"])
def test_creaky_voice_has_irregular_quieter_pulses_towards_the_end(sex):
    modal, creaky = family_voices(sex, "creaky")
    assert 0.45 <= creaky.fry <= 0.8 and modal.fry == 0
    y_modal, y_creaky = say(modal), say(creaky)
    assert periodicity(y_creaky, "late") < periodicity(y_modal, "late") - 0.1
    assert periodicity(y_creaky) > periodicity(y_creaky, "late")  # modal voice first, fry later


@pytest.mark.parametrize("sex", ["Male", "Female"])
def test_pressed_voice_has_a_weaker_fundamental(sex):
    modal, pressed = family_voices(sex, "pressed")
    assert pressed.open_quotient < 0.4 < modal.open_quotient
    h1 = [band_share(say(v), 0.5 * v.f0, 1.5 * v.f0) for v in (modal, pressed)]
    assert h1[1] < 0.6 * h1[0], h1


def test_accent_shifts_each_vowel_its_own_way():
    modal, accented = family_voices("Female", "accent")
    ratios = np.array([synth._vowel_formants(v, accented)[0] / synth._vowel_formants(v, modal)[0] for v in synth.VOWELS])
    assert np.std(np.log(ratios[:, 1])) > 0.02 and np.std(np.log(ratios[:, 0])) > 0.03  # not one global scale
    assert np.all((ratios > 0.7) & (ratios < 1.4))  # still the same vowels
    assert accented.formant_dispersion is not None and modal.formant_dispersion is None


@pytest.mark.parametrize("sex", ["Male", "Female"])
def test_telephone_channel_has_no_energy_above_the_band(sex):
    modal, phone = family_voices(sex, "telephone")
    phone.channel, phone.mu_law = (300.0, 3400.0), True
    y_modal, y_phone = say(modal), say(phone)
    assert band_share(y_modal, 3600, 8000) > 0.005
    assert band_share(y_phone, 3600, 8000) < 1e-4 and band_share(y_phone, 0, 150) < 1e-4
    phone.channel, phone.mu_law = (150.0, 4500.0), False  # the band-limited microphone
    assert band_share(say(phone), 5000, 8000) < 1e-3


@pytest.mark.parametrize("sex", ["Male", "Female"])
def test_reverb_lengthens_the_decay_after_speech(sex):
    dry, wet = family_voices(sex, "reverb")
    assert 0.35 <= wet.rt60 <= 0.9 and dry.rt60 == 0
    wet.rt60, wet.drr_db = 0.8, 0.0
    dry.noise_db = wet.noise_db = -90.0  # no noise floor to hide the tail
    energy = [np.convolve(say(v, "TSI") ** 2, np.ones(160) / 160, "same") for v in (dry, wet)]
    end = np.nonzero(energy[0] > 1e-3 * energy[0].max())[0][-1]  # the dry speech's last sound
    after = slice(end + 800, end + 3200)  # 50-200 ms later
    decay = [10 * np.log10(e[after].mean() / e[:end].mean()) for e in energy]
    assert decay[0] < -45 and decay[1] > -25, decay


def test_low_pitched_women_and_high_pitched_men_cross_in_pitch_not_in_formants():
    import librosa

    standard = synth.VOICE_SETTINGS["standard"]
    for sex, male in (("Female", False), ("Male", True)):
        for actor_id in range(7001, 7011):
            voice = family_voices(sex, "crossed_pitch", actor_id)[1]
            assert (160 <= voice.f0 <= 200) if male else (115 <= voice.f0 <= 145)  # in the other sex's F0 range
            assert voice.formant_scale < 1.05 if male else voice.formant_scale > 1.07  # tract of their own sex
        f0 = np.median(librosa.yin(say(voice).astype(np.float32), fmin=60, fmax=400, sr=synth.SR, frame_length=1024))
        assert (f0 > standard["f0"][False][0]) if male else (f0 < standard["f0"][True][1]), f0  # heard in that range


def test_prosody_family_changes_rate_or_intonation_range():
    changed = 0
    for actor_id in range(7001, 7007):
        modal, other = family_voices("Male", "prosody", actor_id)
        assert other.tempo / modal.tempo < 0.86 or other.tempo / modal.tempo > 1.19
        assert other.pitch_range / modal.pitch_range < 0.66 or other.pitch_range / modal.pitch_range > 1.59
        changed += len(say(other)) != len(say(modal))
    assert changed >= 4  # slower or faster readings make longer or shorter clips
