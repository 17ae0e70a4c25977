"""Feature objects (toolkit/features): a new image feature trains a CNN and is predicted end to end, and a long
recording is cut into the same windows (with the same probabilities) by stage 3's evaluation and by predict.py."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import run_script

from toolkit.features import FEATURES, get_feature
from toolkit.features.fbank import Fbank, FbankParams, mel_banks
from toolkit.features.mel import read_image


def test_a_feature_object_carries_its_settings_through_the_run_card():
    feature = get_feature("fbank").from_dict({"sr": 8000, "n_mels": 40})
    assert feature == Fbank(FbankParams(sr=8000, n_mels=40)) and hash(feature) == hash(Fbank(FbankParams(sr=8000, n_mels=40)))
    assert feature.to_dict()["n_mels"] == 40 and feature.kind == "image" and feature.storage.suffix == ".png"
    assert feature.input.seconds_per_frame == pytest.approx(0.010)  # 80 samples at 8 kHz
    assert feature.digest() != Fbank().digest() and feature.tag().startswith("sr8000_win25ms_shift10ms_bins40_")
    assert FEATURES["mel"]().input.window_seconds({"frames": 128}) == pytest.approx(128 * 512 / 16000)


def test_fbank_is_kaldi_shaped_and_puts_a_tone_in_its_band():
    p = FbankParams()
    banks = mel_banks(p)
    assert banks.shape == (80, 257) and (banks.sum(1) > 0).all() and banks.max() == pytest.approx(1.0, abs=0.05)
    t = np.arange(16000) / 16000
    image = Fbank(p).extract((0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert image.shape == (80, 1 + (16000 - 400) // 160) and image.dtype == np.uint8
    centres = 700 * (np.exp(np.linspace(1127 * np.log1p(20 / 700), 1127 * np.log1p(8000 / 700), 82)[1:-1] / 1127) - 1)
    loudest_row = int(np.median(image.argmax(0)))
    assert abs(centres[::-1][loudest_row] - 1000) < 60  # low frequencies at the bottom: row 0 is the highest band


def test_fbank_images_train_a_cnn_that_predict_and_evaluate_use(sex_data, tmp_path):
    """Stage 2 --features fbank -> train_cnn.py cnn3 (2 epochs) -> predict.py and evaluate.py agree with stage 3
    (each stage in this process: the same commands without four interpreter start-ups and imports)."""
    data, models = tmp_path / "fbank", tmp_path / "models"
    run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", data, "--save_csv_path",
               data, "--category", "sex", "--features", "fbank", "--workers", "2", in_process=True)
    test = pd.read_csv(data / "sex_test.csv")
    image = read_image(str(data / test["fbank_file_path"][0]))
    assert image.shape[0] == 80 and image.dtype == np.uint8 and (image > 0).mean() > 0.2
    run_script("train_cnn.py", "--csv_load_path", data, "--category", "sex", "--model", "cnn3", "--epochs", "2",
               "--batch_size", "16", "--threads", "1", "--model_save_path", models, in_process=True)
    card = json.loads((models / "cnn3_sex.json").read_text())
    assert card["features"]["type"] == "fbank" and card["features"]["params"]["n_mels"] == 80
    assert card["input"] == {"kind": "image", "shape": [3, 128, 128], "image_size": [128, 128], "time_axis": "pad",
                             "frames": 128}
    stage3 = pd.read_csv(models / "cnn3_sex_test_predictions.csv")
    clips = [str((data / p).resolve()) for p in stage3["Audio_file_path"]]
    assert max(sf.info(c).duration for c in clips) > 128 * 0.010  # longer than the 1.28 s window: several windows
    run_script("predict.py", "--model_dir", models, "--model_file", "cnn3_sex.pt", *clips, "--out", tmp_path / "p.csv", in_process=True)
    got = pd.read_csv(tmp_path / "p.csv")
    assert (got["windows"] > 1).any()
    np.testing.assert_allclose(got[["p_Male", "p_Female"]].to_numpy(), stage3[["p_Male", "p_Female"]].to_numpy(), atol=1e-5)
    run_script("evaluate.py", "--model_dir", models, "--model_file", "cnn3_sex.pt", data / "sex_test.csv",
               "--out", tmp_path / "eval", in_process=True)
    scores = json.loads((tmp_path / "eval" / "cnn3_sex_evaluation.json").read_text())["test"]
    for metric in ("f1", "accuracy", "loss"):
        assert scores[metric] == pytest.approx(card["metrics"]["test"][metric], abs=1e-6)


@pytest.mark.parametrize("packed", [False, True])
def test_a_long_clip_gets_the_same_windows_in_evaluation_and_predict(trained_cnn3, sex_data, tmp_path, packed):
    """A recording longer than two windows (> 8.2 s): stage 3's evaluation (from its stored image, per-clip file or
    packed store) scores it on the windows predict.py cuts from its audio, with the same probabilities."""
    from models import load_trained_model
    from toolkit.features.store import write_store
    from toolkit.io.audio import load_audio
    from toolkit.serving.inference import View, analyse, model_inputs
    from toolkit.training.data import load_split
    from toolkit.training.engine import evaluate, evaluation_windows

    model, card = load_trained_model(str(trained_cnn3 / "cnn3_sex.pt"))
    table = pd.read_csv(sex_data / "sex_test.csv")
    speaker = table[table["ActorID"] == table["ActorID"][0]]
    pieces = [load_audio(str(sex_data / p), 16000) for p in speaker["Audio_file_path"]]
    long = np.concatenate(pieces * (1 + int(10 * 16000 / sum(map(len, pieces)))))[: round(10.5 * 16000)]
    wav = tmp_path / "long.wav"
    sf.write(wav, long, 16000)
    feature = card.feature
    feature.storage.save(feature.from_audio(str(wav)), str(tmp_path / "long.png"))
    (tmp_path / "params.json").write_text(json.dumps(feature.to_dict()))
    csv = tmp_path / "long_test.csv"
    pd.DataFrame({"Image_file_path": ["long.png"], "Audio_file_path": ["long.wav"], "ActorID": [1],
                  "sex": [speaker["sex"].iloc[0]]}).to_csv(csv, index=False)
    if packed:
        write_store(str(csv), "mel", "uint8", ["long.png"], lambda: [read_image(str(tmp_path / "long.png"))],
                    feature.to_dict())

    test = load_split(str(csv), "sex", options=card.input_options, classes=card.classes)
    test.stats = card.features["stats"]
    windows, owner = evaluation_windows(test, True)
    view = View.of(card)
    recording = analyse((str(wav), [view], 3600.0, None))
    cut = model_inputs(card, [f for _, _, f in recording.windows[view]])
    assert len(owner) == len(recording.windows[view]) == 5  # 10.5 s: 4.1 s windows every 2.05 s and one flush with the end
    assert torch.equal(torch.as_tensor(windows.x[:]), torch.as_tensor(cut.x[:]))
    probs = evaluate(model, test, 4, torch.device("cpu"), len(card.classes), True, card.temperature)["probabilities"]
    run_script("predict.py", "--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", wav, "--out", tmp_path / "p.csv", in_process=True)
    got = pd.read_csv(tmp_path / "p.csv")
    assert got["windows"][0] == 5
    np.testing.assert_allclose(got[["p_Male", "p_Female"]].to_numpy(), probs, atol=1e-5)
