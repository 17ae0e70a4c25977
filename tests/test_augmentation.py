"""Waveform augmentation: each transform does what it says (toolkit/augmentation/wave_augment.py), augmentation.py writes copies of
training clips only and they never cross a split or fold, and training's --augment re-makes clips on the fly."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from conftest import run_script
from toolkit.augmentation import wave_augment as W
from toolkit.augmentation.augment import with_wave_augment
from toolkit.config import RECIPES
from toolkit.errors import ToolkitError
from toolkit.io.splits import is_copy, normalization_groups
from toolkit.training.crossval import fold_splits
from toolkit.training.data import load_split

SR = 16000
RNG = np.random.default_rng(0)


def vowel(f0: float = 120.0, formants: tuple[float, ...] = (700.0, 1800.0, 2800.0), seconds: float = 1.0) -> np.ndarray:
    """A steady synthetic vowel: harmonics of f0 shaped by formant peaks (a source-filter voice)."""
    t = np.arange(int(seconds * SR)) / SR
    y = np.zeros_like(t)
    for k in range(1, int(7000 / f0)):
        amp = sum(np.exp(-0.5 * ((k * f0 - f) / 120) ** 2) for f in formants) + 0.02
        y += amp * np.sin(2 * np.pi * k * f0 * t)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def f0_of(y: np.ndarray) -> float:
    import librosa

    return float(np.median(librosa.yin(y, fmin=60, fmax=500, sr=SR)))


def envelope_peak(y: np.ndarray, low: float, high: float) -> float:
    """Frequency of the spectral envelope's (cepstrally smoothed) highest peak between low and high Hz."""
    import librosa

    spectrum = np.abs(librosa.stft(y, n_fft=2048)).mean(1)
    envelope = W.spectral_envelope(np.log(spectrum + 1e-8), 30)
    freqs = np.linspace(0, SR / 2, len(spectrum))
    band = (freqs > low) & (freqs < high)
    return float(freqs[band][np.argmax(envelope[band])])


def band_energy(y: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    return float(power[(freqs >= low) & (freqs < high)].sum())


# ---- the transforms ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_duration_and_pitch_by_the_factor(factor):
    y = vowel()
    out = W.speed(y, SR, RNG, factor)
    assert len(out) / len(y) == pytest.approx(1 / factor, rel=0.002)
    assert f0_of(out) / f0_of(y) == pytest.approx(factor, rel=0.02)


def test_tempo_changes_duration_but_not_pitch():
    y = vowel()
    out = W.tempo(y, SR, RNG, 1.15)
    assert len(out) / len(y) == pytest.approx(1 / 1.15, rel=0.01)
    assert f0_of(out) == pytest.approx(f0_of(y), rel=0.02)


@pytest.mark.parametrize("semitones", [-3.0, 2.0])
def test_pitch_shift_moves_f0_by_the_ratio_and_keeps_duration(semitones):
    y = vowel()
    out = W.pitch(y, SR, RNG, semitones)
    assert len(out) == len(y)
    assert f0_of(out) / f0_of(y) == pytest.approx(2 ** (semitones / 12), rel=0.02)


@pytest.mark.parametrize("alpha", [0.9, 1.12])
def test_vtlp_moves_the_formants_but_not_f0(alpha):
    y = vowel()
    out = W.vtlp(y, SR, RNG, alpha)
    assert len(out) == len(y)
    assert f0_of(out) == pytest.approx(f0_of(y), rel=0.01)  # the harmonics stay where they were
    for low, high in ((450, 1100), (1400, 2300)):  # the first two formants move by alpha (within one harmonic)
        assert envelope_peak(out, low, high) == pytest.approx(alpha * envelope_peak(y, low, high), abs=70)


@pytest.mark.parametrize("semitones", [-4.0, 4.0])
def test_f0_moves_the_pitch_and_keeps_the_formants(semitones):
    y = vowel()
    out = W.f0(y, SR, RNG, semitones)
    assert len(out) == len(y)
    assert f0_of(out) / f0_of(y) == pytest.approx(2 ** (semitones / 12), rel=0.02)
    shifted = W.pitch(y, SR, RNG, semitones)  # a plain pitch shift moves the formants by the same ratio
    for low, high in ((450, 1100), (1400, 2300)):
        assert envelope_peak(out, low, high) == pytest.approx(envelope_peak(y, low, high), abs=90)
        assert abs(envelope_peak(shifted, low, high) - envelope_peak(y, low, high)) > 120
    sizes = [abs(W.TRANSFORMS["f0"].draw(np.random.default_rng(i), SR)["semitones"]) for i in range(50)]
    assert min(sizes) >= W.F0_SEMITONES[0] and max(sizes) <= W.F0_SEMITONES[1]


@pytest.mark.parametrize("target_hz", [95.0, 210.0])
def test_f0_to_moves_any_voice_to_the_target_pitch(target_hz):
    for y in (vowel(f0=120.0), vowel(f0=190.0)):  # a man's and a woman's pitch end up at the same target
        out = W.f0_to(y, SR, RNG, target_hz)
        assert W.speaking_f0(out, SR) == pytest.approx(target_hz, rel=0.03)
        assert envelope_peak(out, 1400, 2300) == pytest.approx(envelope_peak(y, 1400, 2300), abs=100)
    silence = np.zeros(SR, dtype=np.float32)
    assert W.speaking_f0(silence, SR) is None and np.array_equal(W.f0_to(silence, SR, RNG, 150.0), silence)


def band_level_db(y: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    return float(10 * np.log10(spectrum[(freqs >= low) & (freqs < high)].sum() + 1e-12))


def test_f0_down_keeps_the_top_band():
    """Lowering the pitch by resampling empties the band above nyquist * 2**(semitones/12); f0 fills it from the
    original, so a lowered copy does not sound band-limited (before: its long-term spectrum 9 dB off above 850 Hz at -6 semitones)."""
    y = vowel()
    out, lowered = W.f0(y, SR, RNG, -6.0), W.pitch(y, SR, RNG, -6.0)
    assert band_level_db(lowered, 6000, 7000) < band_level_db(y, 6000, 7000) - 20
    assert band_level_db(out, 6000, 7000) == pytest.approx(band_level_db(y, 6000, 7000), abs=3)


def test_formants_moves_each_region_by_its_own_factor():
    y = vowel()
    factors = [1.0, 1.12, 0.9, 1.0]  # F2's region up, F3's down: no single tract length does that
    out = W.formants(y, SR, RNG, factors)
    assert len(out) == len(y)
    assert f0_of(out) == pytest.approx(f0_of(y), rel=0.01)
    warp = lambda f: f * np.interp(f, [0, *W.FORMANT_REGIONS, SR / 2], [1.0, *factors, 1.0])  # noqa: E731
    for low, high in ((1400, 2300), (2300, 3300)):
        assert envelope_peak(out, low, high) == pytest.approx(warp(envelope_peak(y, low, high)), abs=70)
    assert envelope_peak(out, 1400, 2300) > envelope_peak(y, 1400, 2300) + 20
    assert envelope_peak(out, 2300, 3300) < envelope_peak(y, 2300, 3300) - 100
    drawn = [W.TRANSFORMS["formants"].draw(np.random.default_rng(i), SR)["factors"] for i in range(50)]
    assert np.all(np.abs(np.log(drawn)) <= W.FORMANT_SPREAD + 1e-3) and np.std(np.log(drawn)) > W.FORMANT_SPREAD / 3


def test_vowels_moves_each_stretch_of_speech_its_own_way():
    """A steady vowel through `vowels`: its F2 peak now wanders from syllable to syllable within the spread, where
    `formants` would move it once; the pitch stays."""
    import librosa

    y = vowel(seconds=2.0)
    out = W.vowels(y, SR, np.random.default_rng(3), 0.08, 0.15)
    assert len(out) == len(y) and f0_of(out) == pytest.approx(f0_of(y), rel=0.01)
    spectra = np.abs(librosa.stft(out, n_fft=2048, hop_length=512)).T[4:-4]  # frames away from the edges
    envelope = W.spectral_envelope(np.log(spectra + 1e-8), 30)
    freqs = np.linspace(0, SR / 2, spectra.shape[1])
    band = (freqs > 1300) & (freqs < 2400)
    peaks = freqs[band][np.argmax(envelope[:, band], axis=1)]
    assert np.ptp(peaks) > 80  # it moves over time (one frequency bin is 8 Hz; a fixed warp gives one peak)
    assert np.all(np.abs(np.log(peaks / envelope_peak(y, 1300, 2400))) < 0.08 + 0.04)
    assert W.TRANSFORMS["vowels"].draw(np.random.default_rng(0), SR) == {"spread": W.FORMANT_SPREAD,
                                                                         "segment_s": W.VOWEL_SEGMENT_S}


def test_breath_adds_aspiration_shaped_by_the_voice_at_the_requested_hnr():
    y = np.concatenate([vowel(), np.zeros(SR // 2, np.float32)])  # a vowel, then half a second of silence
    out = W.breath(y, SR, RNG, 6.0)
    added = out - y
    assert len(out) == len(y) and out.dtype == np.float32
    assert 10 * np.log10(W.power(y) / W.power(added)) == pytest.approx(6.0, abs=0.05)
    voice, silence = slice(0, SR), slice(SR + SR // 8, None)  # the noise's frames reach 64 ms past the vowel
    assert W.power(added[silence]) < 1e-4 * W.power(added[voice])  # it follows the voice: none in the pause
    ratio = lambda low, high: band_energy(added[voice], low, high) / band_energy(y[voice], low, high)  # noqa: E731
    assert ratio(2000, 4000) > 10 * ratio(0, 800)  # aspiration shows in the high band, not under the first harmonics
    assert envelope_peak(added[voice], 1400, 2300) == pytest.approx(envelope_peak(y[voice], 1400, 2300), abs=150)
    drawn = [W.TRANSFORMS["breath"].draw(np.random.default_rng(i), SR)["hnr_db"] for i in range(50)]
    assert W.BREATH_HNR_DB[0] <= min(drawn) and max(drawn) <= W.BREATH_HNR_DB[1] and np.std(drawn) > 2


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
@pytest.mark.parametrize("snr_db", [5.0, 15.0])
def test_noise_reaches_the_requested_snr(kind, snr_db):
    y = vowel()
    babble = [vowel(f0=200, formants=(500, 1500)), vowel(f0=90, seconds=0.4)] if kind == "babble" else None
    out = W.noise(y, SR, np.random.default_rng(1), kind, snr_db, babble=babble)
    measured = 10 * np.log10(W.power(y) / W.power(out - y))
    assert measured == pytest.approx(snr_db, abs=0.5)


def test_pink_noise_falls_3_db_per_octave():
    noise = W.pink_noise(SR * 4, np.random.default_rng(2))
    ratio = 10 * np.log10(band_energy(noise, 500, 1000) / band_energy(noise, 2000, 4000))  # per-octave energy equal
    assert abs(ratio) < 1.0


def test_telephone_keeps_only_300_to_3400_hz():
    y = (0.1 * np.random.default_rng(3).standard_normal(2 * SR)).astype(np.float32)  # white noise: every band
    out = W.telephone(y, SR, RNG)
    assert len(out) == len(y)
    in_band = band_energy(out, 400, 3300) / band_energy(y, 400, 3300)
    assert in_band > 0.7  # the band passes
    for low, high in ((0, 200), (3700, 8000)):  # out of band: at least 25 dB down
        assert band_energy(out, low, high) / band_energy(y, low, high) < 3e-3


def test_codec_removes_what_lies_above_its_cutoff():
    y = (0.1 * np.random.default_rng(4).standard_normal(SR)).astype(np.float32)
    out = W.codec(y, SR, RNG, 4000.0, 8)
    assert len(out) == len(y)
    assert band_energy(out, 4300, 8000) / band_energy(y, 4300, 8000) < 1e-3
    assert band_energy(out, 100, 3500) / band_energy(y, 100, 3500) > 0.7


def test_dropfreq_notches_the_named_band():
    y = (0.1 * np.random.default_rng(5).standard_normal(2 * SR)).astype(np.float32)
    out = W.drop_freq(y, SR, RNG, [2000.0], 400.0)
    assert band_energy(out, 1950, 2050) / band_energy(y, 1950, 2050) < 0.05
    assert band_energy(out, 4000, 6000) / band_energy(y, 4000, 6000) > 0.9


def test_tilt_slopes_the_spectrum_by_its_db_per_octave_around_the_pivot():
    t = np.arange(SR) / SR
    tones = {f: np.sin(2 * np.pi * f * t) for f in (250.0, 1000.0, 4000.0)}  # whole cycles: each one rfft bin
    y = (0.1 * sum(tones.values())).astype(np.float32)
    for slope in (3.0, -2.5):
        out = W.tilt(y, SR, RNG, slope)
        assert len(out) == len(y) and out.dtype == np.float32
        for f in tones:
            db = 10 * np.log10(band_energy(out, f - 20, f + 20) / band_energy(y, f - 20, f + 20))
            assert db == pytest.approx(slope * np.log2(f / W.TILT_PIVOT_HZ), abs=0.1)  # -2, 0 and +2 octaves
    drawn = [W.TRANSFORMS["tilt"].draw(np.random.default_rng(i), SR)["db_per_octave"] for i in range(50)]
    assert max(map(abs, drawn)) <= W.TILT_DB_PER_OCTAVE and min(drawn) < 0 < max(drawn)


def test_reverb_lengthens_the_decay():
    burst = np.zeros(SR, np.float32)
    burst[4000:8000] = vowel()[:4000]  # sound, then silence after sample 8000
    wet = W.reverb(burst, SR, np.random.default_rng(6), rt60=0.6, drr_db=3.0)
    assert len(wet) == len(burst)
    tail = wet[8000 + 800 : 8000 + 4000]  # 50-250 ms after the sound stopped
    assert W.power(tail) > 1e-3 * W.power(burst[4000:8000])  # the room still rings
    assert W.power(burst[8000:]) == 0.0
    early, late = W.power(wet[8000:9600]), W.power(wet[10400:12000])
    assert late < early  # and dies away
    longer = W.reverb(burst, SR, np.random.default_rng(6), rt60=1.2, drr_db=3.0)
    assert W.power(longer[10400:12000]) / W.power(longer[8000:9600]) > late / early  # a longer RT60 decays slower


def test_gain_and_shift():
    y = vowel()
    assert np.allclose(W.gain(y, SR, RNG, -6.0), y * 10 ** (-6 / 20))
    later = W.shift(y, SR, RNG, 0.1)
    assert len(later) == len(y) and not later[:1600].any() and np.array_equal(later[1600:], y[:-1600])
    earlier = W.shift(y, SR, RNG, -0.1)
    assert np.array_equal(earlier[:-1600], y[1600:]) and not earlier[-1600:].any()


def test_chains_are_seeded_recorded_and_never_clip():
    spec = W.parse_spec(",".join(W.TRANSFORMS))
    for seed in range(4):
        chain = W.draw_chain(spec, np.random.default_rng(seed), SR, at_least_one=True, babble=False)
        again = W.draw_chain(spec, np.random.default_rng(seed), SR, at_least_one=True, babble=False)
        assert chain == again and chain
        assert all(p.get("kind") != "babble" for _, p in chain)
        loud = W.apply_chain(vowel() * 3, SR, chain, np.random.default_rng(seed))
        assert loud.dtype == np.float32 and np.isfinite(loud).all() and np.abs(loud).max() <= W.PEAK_LIMIT + 1e-6
        assert W.describe(chain).startswith(chain[0][0] + "(")


def test_spec_parsing():
    assert W.format_spec(W.parse_spec("noise:0.3, speed")) == "speed:0.5,noise:0.3"  # the chain's order
    assert W.parse_spec("none") == {} and W.format_spec({}) == "none"
    for bad, message in (("speeed", "unknown transform 'speeed'"), ("speed:2", "must be in (0, 1]"),
                         ("speed:x", "must be a number")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
            W.parse_spec(bad)


# ---- augmentation.py ---------------------------------------------------------------------------------------------

TRANSFORMS = "speed,vtlp,noise,reverb,gain"  # quick ones; every transform is tested above


@pytest.fixture(scope="module")
def split(sex_data, tmp_path_factory):
    """Stage 2 of the session corpus in a folder of its own (stage 2 with copies rewrites its split CSVs)."""
    out = tmp_path_factory.mktemp("aug_split")
    run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", out, "--save_csv_path",
               out, "--category", "sex", "--workers", "2", in_process=True)
    return out


@pytest.fixture(scope="module")
def copies(split):
    run_script("augmentation.py", "--data_dir", split, "--category", "sex", "--copies", "2", "--transforms", TRANSFORMS,
               "--workers", "2", "--seed", "7", in_process=True)
    return pd.read_csv(split / "sex_augmented.csv")


def test_k_copies_of_every_training_clip(split, copies):
    train = pd.read_csv(split / "sex_train.csv")
    assert copies.groupby("source_clip").size().to_dict() == {name: 2 for name in train["Audio_file_name"]}
    assert copies.groupby("source_clip")["copy_number"].apply(sorted).tolist() == [[1, 2]] * len(train)
    source = train.set_index("Audio_file_name").loc[copies["source_clip"]]
    assert (copies["ActorID"].to_numpy() == source["ActorID"].to_numpy()).all()  # a copy keeps its speaker
    assert (copies["sex"].to_numpy() == source["sex"].to_numpy()).all()  # and its labels
    assert copies["transform"].str.match(r"^(speed|vtlp|noise|reverb|gain)\(").all()
    assert "Image_file_path" not in copies.columns  # stage 2 makes the copies' features
    for path in copies["Audio_file_path"][:5]:
        audio, sr = sf.read(split / path)
        assert sr == 16000 and len(audio) > 1000 and np.abs(audio).max() < 1


def test_same_seed_same_copies_and_a_rerun_skips_them(split, copies, tmp_path):
    rerun = run_script("augmentation.py", "--data_dir", split, "--category", "sex", "--copies", "2", "--transforms",
                       TRANSFORMS, "--workers", "1", "--seed", "7", in_process=True)
    assert f"{len(copies)} already written, 0 to make" in rerun.stdout
    run_script("augmentation.py", "--data_dir", split, "--category", "sex", "--copies", "2", "--transforms", TRANSFORMS,
               "--workers", "1", "--seed", "7", "--save_csv_path", tmp_path, in_process=True)
    again = pd.read_csv(tmp_path / "sex_augmented.csv")
    assert again[["Audio_file_name", "transform"]].equals(copies[["Audio_file_name", "transform"]])
    for a, b in zip(copies["Audio_file_path"][:4], again["Audio_file_path"][:4]):
        assert np.array_equal(sf.read(split / a)[0], sf.read(tmp_path / b)[0])
    other = run_script("augmentation.py", "--data_dir", split, "--category", "sex", "--copies", "1", "--transforms",
                       "gain", "--workers", "1", "--seed", "8", "--save_csv_path", tmp_path / "b", in_process=True)
    assert "0 already written" in other.stdout


def test_condition_speaker_puts_a_speakers_kth_copies_through_one_chain(split, copies, tmp_path):
    run_script("augmentation.py", "--data_dir", split, "--category", "sex", "--copies", "2", "--transforms", TRANSFORMS,
               "--workers", "2", "--seed", "7", "--condition", "speaker", "--save_csv_path", tmp_path, in_process=True)
    made = pd.read_csv(tmp_path / "sex_augmented.csv")
    chains = made.groupby(["ActorID", "copy_number"])["transform"]
    assert (chains.nunique() == 1).all()  # one room, channel and noise level for all of a speaker's k-th copies
    assert chains.first().nunique() > len(chains.first()) / 2  # drawn anew for every speaker and copy number
    assert (copies.groupby(["ActorID", "copy_number"])["transform"].nunique() > 1).all()  # 'clip': a draw per copy
    noise = made[made["transform"].str.contains("noise")]
    first = noise.groupby(["ActorID", "copy_number"]).head(2)["Audio_file_path"].tolist()[:2]
    a, b = (sf.read(tmp_path / p)[0] for p in first)  # the same condition, not the same noise samples
    assert not np.array_equal(a[:1000], b[:1000])


def test_balance_evens_out_the_classes(split, tmp_path):
    train = pd.read_csv(split / "sex_train.csv")
    males = train[train["sex"] == "Male"]
    lopsided = pd.concat([train[train["sex"] == "Female"], males[males["ActorID"] == males["ActorID"].iloc[0]]])
    lopsided.to_csv(split / "lopsided.csv", index=False)
    run_script("augmentation.py", "--data_dir", split, "--category", "sex", "--csv", "lopsided.csv", "--copies", "1",
               "--balance", "--transforms", "gain", "--workers", "1", "--save_csv_path", tmp_path, in_process=True)
    made = pd.read_csv(tmp_path / "sex_augmented.csv")
    total = pd.concat([lopsided["sex"], made["sex"]]).value_counts()
    assert total["Male"] == total["Female"] == 2 * (lopsided["sex"] == "Female").sum()


def test_refuses_validation_and_test_clips(split, tmp_path):
    for part, word in (("val", "validation"), ("test", "test")):
        proc = run_script("augmentation.py", "--data_dir", split, "--category", "sex", "--csv", f"sex_{part}.csv",
                          check=False, in_process=True)
        assert proc.returncode == 2
        assert proc.stderr == (f"error: {split / f'sex_{part}.csv'}: is the {word} split; augmentation.py copies "
                               f"training clips only: pass sex_train.csv\n")
    mixed = pd.concat([pd.read_csv(split / "sex_train.csv"), pd.read_csv(split / "sex_test.csv").iloc[:1]])
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    held = mixed.iloc[-1]
    proc = run_script("augmentation.py", "--data_dir", split, "--category", "sex", "--csv", tmp_path / "mixed.csv",
                      check=False, in_process=True)
    assert proc.returncode == 2
    assert proc.stderr == (f"error: {tmp_path / 'mixed.csv'}: 1 clip(s) of validation/test speakers (e.g. "
                           f"{held['Audio_file_name']}, speaker {held['ActorID']}); augmentation.py copies training "
                           f"clips only\n")
    assert not (tmp_path / "sex_augmented.csv").exists()


def test_stage1_csv_gives_the_training_clips_only(split, sex_data, tmp_path):
    run_script("augmentation.py", "--data_dir", split, "--csv", sex_data / "sex_with_audio_path.csv", "--category", "sex",
               "--copies", "1", "--transforms", "gain", "--workers", "1", "--save_csv_path", tmp_path, in_process=True)
    made = pd.read_csv(tmp_path / "sex_augmented.csv")
    assert set(made["source_clip"]) == set(pd.read_csv(split / "sex_train.csv")["Audio_file_name"])


@pytest.fixture(scope="module")
def with_copies(split, copies, sex_data, tmp_path_factory):
    """Stage 2 again with the copies: the same split, the copies added to training."""
    out = tmp_path_factory.mktemp("aug_stage2")
    run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", split, "--save_csv_path",
               out, "--category", "sex", "--workers", "2", "--augmented_csv", split / "sex_augmented.csv", in_process=True)
    return out


def test_stage2_adds_the_copies_to_training_only(split, copies, with_copies):
    parts = {p: pd.read_csv(with_copies / f"sex_{p}.csv") for p in ("train", "val", "test")}
    before = {p: pd.read_csv(split / f"sex_{p}.csv") for p in ("train", "val", "test")}
    for p in ("val", "test"):  # the split of the originals is the one made without copies
        assert parts[p]["Audio_file_name"].tolist() == before[p]["Audio_file_name"].tolist()
    train = parts["train"]
    assert sorted(train.loc[~is_copy(train), "Audio_file_name"]) == sorted(before["train"]["Audio_file_name"])
    assert is_copy(train).sum() == len(copies) and train["Image_file_path"].notna().all()
    held = set(parts["val"]["ActorID"]) | set(parts["test"]["ActorID"])
    assert not held & set(train.loc[is_copy(train), "ActorID"])
    manifest = json.loads((with_copies / "sex_split.json").read_text())
    assert manifest["augmented"]["copies"] == len(copies)


def test_stage2_refuses_copies_of_held_out_clips(split, copies, sex_data, tmp_path):
    test_clip = pd.read_csv(split / "sex_test.csv")["Audio_file_name"].iloc[0]
    bad = copies.assign(source_clip=[test_clip] + copies["source_clip"].tolist()[1:])
    bad["Audio_file_path"] = [str(split / p) for p in bad["Audio_file_path"]]
    bad.to_csv(tmp_path / "bad.csv", index=False)
    proc = run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", split,
                      "--save_csv_path", tmp_path, "--category", "sex", "--augmented_csv", tmp_path / "bad.csv",
                      check=False, in_process=True)
    assert proc.returncode == 2
    assert proc.stderr == (f"error: {tmp_path / 'bad.csv'}: 1 copies of clips outside the training part of this split "
                           f"(e.g. {test_clip}); re-run augmentation.py on this split's training CSV\n")
    assert not (tmp_path / "sex_train.csv").exists()


def test_stage2_refuses_copies_whose_audio_is_missing(split, copies, sex_data, tmp_path):
    moved = tmp_path / "elsewhere" / "sex_augmented.csv"  # the CSV moved away from its copies: relative paths break
    moved.parent.mkdir()
    copies.to_csv(moved, index=False)
    proc = run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", split,
                      "--save_csv_path", tmp_path, "--category", "sex", "--augmented_csv", moved, check=False,
                      in_process=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {moved}: the audio of {len(copies)} of {len(copies)} copies is missing (e.g. "
                                  f"{moved.parent / copies['Audio_file_path'].iloc[0]}); relative paths are read from")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "sex_train.csv").exists()


def test_speaker_normalisation_keeps_each_speakers_kth_copies_apart(with_copies, tmp_path):
    train = pd.read_csv(with_copies / "sex_train.csv")
    groups = normalization_groups(train)
    copy = is_copy(train).to_numpy()
    assert [g for g, c in zip(groups, copy) if not c] == train.loc[~copy, "ActorID"].astype(str).tolist()
    assert [g for g, c in zip(groups, copy) if c] == [f"{a} copy {k}" for a, k in
                                                       zip(train.loc[copy, "ActorID"], train.loc[copy, "copy_number"].astype(int))]
    # the originals are normalised with their own statistics, as a test speaker is: the copies do not move them
    train.loc[~copy].to_csv(with_copies / "originals_only.csv", index=False)
    both = load_split(str(with_copies / "sex_train.csv"), "sex", RECIPES["default"], normalize="speaker")
    alone = load_split(str(with_copies / "originals_only.csv"), "sex", RECIPES["default"], normalize="speaker")
    assert torch.allclose(both.x[torch.from_numpy(~copy)], alone.x, atol=1e-5)
    one = np.array(groups) == groups[int(np.flatnonzero(copy)[0])]  # a speaker's first copies: normalised on their own
    train.loc[one].to_csv(with_copies / "first_copies.csv", index=False)
    first = load_split(str(with_copies / "first_copies.csv"), "sex", RECIPES["default"], normalize="speaker")
    assert torch.allclose(both.x[torch.from_numpy(one)], first.x, atol=1e-5)


def test_folds_keep_every_copy_with_its_speaker_in_training(with_copies):
    frame = pd.concat([pd.read_csv(with_copies / f"sex_{p}.csv") for p in ("train", "val", "test")], ignore_index=True)
    copy = is_copy(frame).to_numpy()
    plain = fold_splits(frame[~copy], "sex", 3, 42)
    for fold, same in zip(fold_splits(frame, "sex", 3, 42), plain):
        speakers = {p: set(frame["ActorID"].iloc[fold[p]]) for p in fold}
        assert not copy[fold["val"]].any() and not copy[fold["test"]].any()  # copies only train
        copied = set(frame["ActorID"].iloc[fold["train"][copy[fold["train"]]]])  # the speakers of the copies trained on
        assert copied <= speakers["train"] and not copied & (speakers["val"] | speakers["test"])
        assert copy[fold["train"]].sum() == copy[frame["ActorID"].isin(speakers["train"]).to_numpy()].sum()
        originals = frame.index[~copy]  # the folds of the originals are the folds without copies
        for p in fold:
            assert sorted(fold[p][~copy[fold[p]]]) == sorted(originals[same[p]])


def test_cross_validation_with_copies_tests_originals_only(with_copies, tmp_path):
    run_script("train_cnn.py", "--csv_load_path", with_copies, "--category", "sex", "--model", "cnn3", "--folds", "2",
               "--epochs", "1", "--batch_size", "32", "--threads", "1", "--model_save_path", tmp_path, in_process=True)
    tested = pd.concat([pd.read_csv(p) for p in tmp_path.glob("cnn3_sex_cv/fold*/cnn3_sex_test_predictions.csv")])
    train = pd.read_csv(with_copies / "sex_train.csv")
    assert len(tested) == len(train) - is_copy(train).sum() + sum(len(pd.read_csv(with_copies / f"sex_{p}.csv"))
                                                                  for p in ("val", "test"))
    assert not is_copy(tested).any()


# ---- on the fly (--augment) -------------------------------------------------------------------------------------

def test_on_the_fly_batches_are_seeded_augmented_and_shaped_like_the_stored(sex_data):
    config = RECIPES["default"]
    train = load_split(str(sex_data / "sex_train.csv"), "sex", config)
    augmented = with_wave_augment(train, "speed:1,noise:1")
    index = torch.arange(4)
    a = augmented.wave_augment.take(augmented, index, torch.Generator().manual_seed(0))
    b = augmented.wave_augment.take(augmented, index, torch.Generator().manual_seed(0))
    stored = train.feature.input.take(train, index, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == stored.shape and a.dtype == stored.dtype
    assert not torch.equal(a, stored)
    assert with_wave_augment(train, "none") is train
    parallel = with_wave_augment(train, "speed:1,noise:1", workers=2)  # the same items, whoever makes them
    assert torch.equal(parallel.wave_augment.take(parallel, index, torch.Generator().manual_seed(0)), a)


def test_augment_refuses_a_bad_spec(sex_data):
    proc = run_script("train_cnn.py", "--csv_load_path", sex_data, "--augment", "speeed", check=False, in_process=True)
    assert proc.returncode == 2 and "argument --augment: unknown transform 'speeed'" in proc.stderr


def test_training_with_augment_runs_and_the_card_records_it(sex_data, tmp_path):
    flags = ["--csv_load_path", sex_data, "--category", "sex", "--model", "cnn3", "--batch_size", "16", "--threads", "1",
             "--model_save_path", tmp_path, "--augment", "noise:0.5,speed:0.5,vtlp:0.3"]
    run_script("train_cnn.py", *flags, "--epochs", "2", in_process=True)
    card = json.loads((tmp_path / "cnn3_sex.json").read_text())
    assert card["training"]["augment"] == "speed:0.5,vtlp:0.3,noise:0.5"
    history = pd.read_csv(tmp_path / "cnn3_sex_metrics.csv")
    assert len(history) == 2 and np.isfinite(history["train_loss"]).all()
    proc = run_script("train_cnn.py", *flags[:-1], "speed:0.5", "--epochs", "3", "--resume", check=False, in_process=True)
    assert proc.returncode == 2 and "--augment speed:0.5 (was speed:0.5,vtlp:0.3,noise:0.5)" in proc.stderr


def test_on_the_fly_refusals():
    from toolkit.features import Egemaps, Mel
    from toolkit.training.data import FeatureSet

    vectors = FeatureSet(x=torch.zeros(2, 88), labels=torch.zeros(2, dtype=torch.long), paths=[],
                         frame=pd.DataFrame(index=range(2)), feature=Egemaps(), audio=["a.wav", "b.wav"])
    with pytest.raises(ToolkitError) as e:
        with_wave_augment(vectors, "speed:0.5")
    assert str(e.value) == ("--augment speed:0.5: on-the-fly augmentation re-makes spectrograms or waveforms, not egemaps "
                            "features; write augmented copies with augmentation.py and re-run stage 2 with "
                            "--augmented_csv instead")
    data = FeatureSet(x=torch.zeros(2, 1, 4, 4, dtype=torch.uint8), labels=torch.zeros(2, dtype=torch.long), paths=[],
                      frame=pd.DataFrame(index=range(2)), feature=Mel(), params={"sr": 16000})
    with pytest.raises(ToolkitError, match="no Audio_file_path column"):
        with_wave_augment(data, "speed")
    data.audio = ["/nonexistent/a.wav", "/nonexistent/b.wav"]
    with pytest.raises(ToolkitError, match="/nonexistent/a.wav: audio file not found"):
        with_wave_augment(data, "speed")
    with pytest.raises(ToolkitError, match="with --normalize speaker"):
        with_wave_augment(data, "speed", "speaker")


def test_on_the_fly_waveforms_for_fine_tuning(sex_data):
    from toolkit.features.waveform import Waveform, WaveformParams

    config = RECIPES["default"]
    train = load_split(str(sex_data / "sex_train.csv"), "sex", config, from_audio=Waveform(WaveformParams()))
    augmented = with_wave_augment(train, "speed:1")
    index = torch.arange(3)
    crops = augmented.wave_augment.take(augmented, index, torch.Generator().manual_seed(0))
    plain = train.feature.input.take(train, index, torch.Generator().manual_seed(0))
    assert crops["x"].dtype == plain["x"].dtype and crops["x"].shape[0] == 3 and plain["lengths"].shape == (3,)
    assert (crops["lengths"] <= round(config.max_seconds * 16000)).all()
    inside = torch.arange(crops["x"].shape[1])[None] < crops["lengths"][:, None]
    assert not crops["x"][~inside].any()  # zero padding after each crop
    clips = crops["x"][inside].float()
    assert abs(float(clips.mean())) < 0.2 and float(clips.std()) == pytest.approx(1, abs=0.2)  # z-scored as stored
