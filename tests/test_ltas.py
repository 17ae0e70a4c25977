"""The long-term average spectrum (--features ltas): the envelope's shape follows the vocal tract, not the pitch, and
the feature goes through stage 2 and a linear head like any vector feature."""
import json
from dataclasses import replace

import librosa
import numpy as np
import pandas as pd
import pytest

from demo.synth import Voice, synthesize
from toolkit.errors import ToolkitError
from toolkit.features import FEATURES, Egemaps, get_feature
from toolkit.features.ltas import Ltas, LtasParams
from toolkit.io.audio import ClipError

from test_compare import own_label_features
from test_egemaps import run_script


def speaker(f0: float, formant_scale: float) -> Voice:
    return Voice(actor_id=1, sex="Female", age=30, f0=f0, formant_scale=formant_scale, open_quotient=0.55,
                 jitter=0.005, shimmer=0.04, breath=0.05, tremor=0.0, tempo=1.0, pitch_range=2.0, expressiveness=1.0,
                 bandwidth_scale=1.0, loudness_db=0.0, noise_db=-60.0, noise_colour=0.9, pulse="rosenberg", accent=0)


def mean_shape(voice: Voice) -> np.ndarray:
    clips = [synthesize(voice, "TAI", "NEU", "XX", np.random.default_rng(i)) for i in range(2)]
    return np.mean([Ltas().extract(c)[:40] for c in clips], axis=0)


def test_the_envelope_follows_the_vocal_tract_and_hardly_the_pitch():
    base = speaker(200.0, 1.0)
    longer_tract, lower_pitch = mean_shape(replace(base, formant_scale=0.88)), mean_shape(replace(base, f0=140.0))
    reference = mean_shape(base)
    assert reference.shape == (40,) and np.isfinite(reference).all()
    # in the F2-F3 region (1-3 kHz, above the resolved harmonics), a 12 % longer tract moves the envelope more than
    # 6 semitones of pitch do
    centres = librosa.mel_frequencies(42, fmin=50.0, fmax=8000.0)[1:-1]
    above = (centres > 1000) & (centres < 3000)
    assert np.abs(longer_tract - reference)[above].mean() > 2 * np.abs(lower_pitch - reference)[above].mean()
    centre = lambda shape: np.average(np.arange(40), weights=np.exp(shape / 10))  # the energy's centre, in bands
    assert centre(longer_tract) < centre(reference)


def test_level_does_not_matter_and_silence_is_a_clip_error():
    audio = synthesize(speaker(180.0, 1.0), "IEO", "NEU", "XX", np.random.default_rng(0))
    np.testing.assert_allclose(Ltas().extract(0.1 * audio), Ltas().extract(audio), atol=0.05)
    with pytest.raises(ClipError, match="frames with sound"):
        Ltas().extract(np.zeros(16000, np.float32))
    with pytest.raises(ToolkitError, match="half the sample rate"):
        LtasParams(sr=8000).check("card.json")
    assert FEATURES["ltas"] is Ltas and get_feature("ltas")().kind == Egemaps().kind == "vector"


@pytest.fixture(scope="module")
def ltas_data(tiny_corpus, tmp_path_factory):
    """Stages 1-2 with --features ltas on all clips of the session's corpus (own-data path)."""
    return own_label_features(tiny_corpus, tmp_path_factory.mktemp("ltas"), "ltas", label="sex", per_speaker=None)


def test_a_linear_head_learns_sex_from_the_ltas(ltas_data, tmp_path):
    table = pd.read_csv(ltas_data / "sex_train.csv")
    first = Ltas().storage.read(str(ltas_data / table["ltas_file_path"][0]))
    assert first.shape == (80,) and np.isfinite(first).all()
    run_script("train_cnn.py", "--csv_load_path", ltas_data, "--category", "sex", "--model", "linear", "--threads", "1",
               "--model_save_path", tmp_path)
    card = json.loads((tmp_path / "linear_sex.json").read_text())
    assert card["features"]["type"] == "ltas" and card["input"] == {"kind": "vector", "shape": [80]}
    assert card["metrics"]["test"]["accuracy"] > 0.75  # chance 0.5


def test_an_ltas_head_exports_to_onnx_and_predicts_a_recording(ltas_data, tmp_path):
    run_script("train_cnn.py", "--csv_load_path", ltas_data, "--category", "sex", "--model", "linear", "--threads", "1",
               "--model_save_path", tmp_path)
    proc = run_script("export_onnx.py", "--model_file", tmp_path / "linear_sex.pt", "--out", tmp_path / "onnx",
                      "--check_clips", "4", "--threads", "1")
    assert "onnxruntime reproduces the torch logits within 0.0001" in proc.stdout.strip().splitlines()[-1]
    clip = pd.read_csv(ltas_data / "sex_test.csv")["Audio_file_path"][0]
    audio = str((ltas_data / clip).resolve())
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.csv"
        model = tmp_path / "linear_sex.pt" if backend == "torch" else tmp_path / "onnx"
        run_script("predict.py", "--model_file", model, "--backend", backend, audio, "--out", out, "--threads", "1")
    torch_rows, onnx_rows = pd.read_csv(tmp_path / "torch.csv"), pd.read_csv(tmp_path / "onnx.csv")
    assert len(torch_rows) == 1 and torch_rows["predicted"].tolist() == onnx_rows["predicted"].tolist()
    np.testing.assert_allclose(torch_rows["p_male"], onnx_rows["p_male"], atol=1e-4)
