"""Speech encoders, offline, with a tiny random-init wav2vec2 written to disk like a downloaded model: frozen features
(stage 2 --features ssl) + mlp, fine-tuning (train_wav2vec2.py), predict.py, stage 5 and summarize_runs.py through
the run card; where encoders are looked for; clips that are very short, very long or at another sampling rate."""
import json
import shutil
from argparse import Namespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import generate_mel_spectrograms
import predict
import pseudo_labeling_semisupervised
import summarize_runs
import train_cnn
import train_wav2vec2
from conftest import run_script
from demo.encoder import save_demo_encoder
from toolkit.errors import ToolkitError
from toolkit.features import Ssl
from toolkit.features.encoders import MAX_CHUNK_SECONDS, pooled_states, resolve_encoder
from toolkit.features.ssl import frozen_encoder
from toolkit.features.waveform import LONGEST_SAMPLES, Waveform
from models import load_trained_model
from toolkit.io.labels import CLASSES

FINETUNE_FLAGS = ["--category", "sex", "--epochs", "2", "--batch_size", "8", "--gradient_accumulation_steps", "2",
                  "--learning_rate", "1e-3", "--max_seconds", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """hidden 32, 2 transformer layers: config.json, preprocessor_config.json and model.safetensors, as hub models."""
    return save_demo_encoder(str(tmp_path_factory.mktemp("encoder") / "tiny_wav2vec2"))


@pytest.fixture(scope="module")
def ssl_data(sex_data, encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("ssl")
    run_script("generate_mel_spectrograms.py", "--load_csv_path", sex_data, "--save_spec_path", out, "--save_csv_path", out,
               "--category", "sex", "--features", "ssl", "--encoder", encoder, "--threads", "1", in_process=True)
    return out


@pytest.fixture(scope="module")
def mlp_on_ssl(ssl_data, tmp_path_factory):
    models = tmp_path_factory.mktemp("mlp_ssl")
    run_script("train_cnn.py", "--csv_load_path", ssl_data, "--category", "sex", "--model", "mlp", "--epochs", "5",
               "--batch_size", "16", "--threads", "1", "--model_save_path", models, in_process=True)
    return models


@pytest.fixture(scope="module")
def finetuned(sex_data, encoder, tmp_path_factory):
    """train_wav2vec2.py on the mel split CSVs (their Audio_file_path), from the tiny encoder's weights."""
    models = tmp_path_factory.mktemp("finetuned")
    run_script("train_wav2vec2.py", "--csv_load_path", sex_data, "--encoder", encoder, *FINETUNE_FLAGS,
               "--model_save_path", models, in_process=True)
    return models


def test_stage2_stores_a_float16_layer_stack_per_clip_and_resumes(ssl_data, sex_data, encoder, capsys):
    table = pd.read_csv(ssl_data / "sex_train.csv")
    assert list(table["Audio_file_name"]) == list(pd.read_csv(sex_data / "sex_train.csv")["Audio_file_name"])
    stored = np.load(ssl_data / table["ssl_file_path"][0])
    assert stored.shape == (3, 32) and stored.dtype == np.float16  # the CNN front end's projection + 2 layers
    params = json.loads(next((ssl_data / "ssl").glob("*/params.json")).read_text())
    assert params == {"sr": 16000, "encoder": encoder, "normalize": True, "chunk_seconds": MAX_CHUNK_SECONDS}
    generate_mel_spectrograms.main(["--load_csv_path", str(sex_data), "--save_spec_path", str(ssl_data), "--save_csv_path",
                                    str(ssl_data), "--category", "sex", "--features", "ssl", "--encoder", encoder])
    assert "96 clips, 96 ssl files already made, 0 to make" in capsys.readouterr().out


def test_mlp_on_frozen_features_and_predict_reproduce_the_test_probabilities(mlp_on_ssl, ssl_data):
    card = json.loads((mlp_on_ssl / "mlp_sex.json").read_text())
    assert card["features"]["type"] == "ssl" and card["input"] == {"kind": "vector", "shape": [3, 32]}
    assert np.array(card["features"]["stats"]["std"]).shape == (3, 32)
    assert_predict_reproduces(mlp_on_ssl, "mlp_sex", ssl_data)


def test_finetuned_model_has_a_self_contained_card_and_predict_reproduces_it(finetuned, sex_data, encoder):
    card = json.loads((finetuned / "wav2vec2_sex.json").read_text())
    assert card["model"] == "wav2vec2" and card["init"] == ["pretrained-speech"]
    assert card["features"] == {"type": "waveform", "params": {"sr": 16000, "normalize": True, "min_samples": 400},
                                "stats": None}
    detail = card["init_detail"]["encoder"]
    assert detail["source"] == encoder and detail["config"]["hidden_size"] == 32 and detail["window"] == 32000
    training = card["training"]
    assert (training["recipe"], training["accumulate"], training["lr_schedule"]) == ("wav2vec2", 2, "linear")
    state = torch.load(finetuned / "wav2vec2_sex.pt", weights_only=True)
    assert "classifier.weight" in state and any(k.startswith("encoder.") for k in state)
    shutil.rmtree(encoder + "_moved", ignore_errors=True)
    shutil.move(encoder, encoder + "_moved")  # predict.py needs only the .pt and its card
    try:
        assert_predict_reproduces(finetuned, "wav2vec2_sex", sex_data)
    finally:
        shutil.move(encoder + "_moved", encoder)


def assert_predict_reproduces(models, stem: str, data) -> None:
    """predict.py on the test clips' audio gives the probabilities the evaluation wrote, to 1e-5."""
    expected = pd.read_csv(models / f"{stem}_test_predictions.csv")
    clips = [str((data / p).resolve()) for p in expected["Audio_file_path"]]
    out = models / "predict_check.csv"
    predict.main(["--model_dir", str(models), "--model_file", f"{stem}.pt", *clips, "--out", str(out), "--device", "cpu",
                  "--threads", "1"])
    got = pd.read_csv(out).set_index("file")
    for clip, (_, row) in zip(clips, expected.iterrows()):
        for c in CLASSES["sex"]:
            assert abs(got.loc[clip, f"p_{c}"] - row[f"p_{c}"]) < 1e-5


def test_finetuning_stopped_after_epoch_1_resumes_exactly(finetuned, sex_data, encoder, tmp_path, monkeypatch):
    """Time masks (numpy's RNG), dropout, crops, accumulation: stopped after epoch 1 and resumed, the run ends as
    the uninterrupted 2-epoch run did."""
    from toolkit.training import engine

    def save_then_stop(path, model, optimizer, generator, epoch, history, **extra):
        saved(path, model, optimizer, generator, epoch, history, **extra)
        if epoch == 1:
            raise KeyboardInterrupt  # as if killed right after the checkpoint

    saved = engine.save_last
    flags = ["--csv_load_path", str(sex_data), "--encoder", encoder, *FINETUNE_FLAGS, "--model_save_path", str(tmp_path)]
    monkeypatch.setattr(engine, "save_last", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_wav2vec2.main(flags)
    monkeypatch.setattr(engine, "save_last", saved)
    train_wav2vec2.main([*flags, "--resume"])
    resumed = json.loads((tmp_path / "wav2vec2_sex_metrics.json").read_text())["history"]
    whole = json.loads((finetuned / "wav2vec2_sex_metrics.json").read_text())["history"]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed] == \
           [{k: v for k, v in h.items() if k != "seconds"} for h in whole]


def test_stage5_and_the_results_table_take_a_finetuned_encoder(finetuned, sex_data, mlp_on_ssl, tmp_path):
    shutil.copytree(finetuned, tmp_path / "runs" / "w2v")
    shutil.copytree(mlp_on_ssl, tmp_path / "runs" / "mlp")
    test = pd.read_csv(sex_data / "sex_test.csv")
    unlabeled = tmp_path / "unlabeled.csv"
    pd.DataFrame({"Audio_file_path": [str((sex_data / p).resolve()) for p in test["Audio_file_path"][:8]]}).to_csv(unlabeled, index=False)
    pseudo_labeling_semisupervised.main(["--csv_load_path", str(sex_data), "--category", "sex", "--model", "wav2vec2",
                                         "--unlabeled_csv", str(unlabeled), "--epochs", "1", "--batch_size", "4",
                                         "--T1", "0", "--T2", "1", "--threads", "1", "--workers", "1",
                                         "--model_save_and_load_path", str(tmp_path / "runs" / "w2v")])
    card = json.loads((tmp_path / "runs" / "w2v" / "wav2vec2_sex_PL.json").read_text())
    assert card["init"] == ["pretrained-speech", "pseudo-label"] and card["features"]["type"] == "waveform"
    summarize_runs.main([str(tmp_path / "runs")])
    table = pd.read_csv(tmp_path / "runs" / "runs_summary.csv")
    rows = {(r["model"], r["features"], r["pre-training"]) for r in table.to_dict("records")}
    assert {("mlp", "ssl", "none"), ("wav2vec2", "waveform", "pretrained-speech (tiny_wav2vec2)"),
            ("wav2vec2", "waveform", "pretrained-speech (tiny_wav2vec2) + pseudo-label")} == rows


# ---- where encoders come from, and what they may not be ------------------------------------------------------

def test_an_encoder_that_is_not_cached_offline_is_one_line_naming_where_it_looked(sex_data, tmp_path):
    proc = run_script("train_wav2vec2.py", "--csv_load_path", sex_data, "--encoder", "facebook/wav2vec2-base",
                      "--model_save_path", tmp_path, check=False, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (f"error: facebook/wav2vec2-base: speech encoder not found (HF_HUB_OFFLINE is set): no directory of that "
            f"name, and not in the Hugging Face cache {tmp_path / 'hf' / 'hub'} (HF_HOME or HF_HUB_CACHE move it); "
            f"get it once where there is network (`hf download facebook/wav2vec2-base`") in proc.stderr


def test_no_network_is_one_line_at_once(tmp_path):
    """Not offline by setting, but the hub cannot be reached: no retries for minutes, one line."""
    proc = run_script("generate_mel_spectrograms.py", "--load_csv_path", tmp_path, "--features", "ssl", "--encoder",
                      "someone/some-encoder", check=False,
                      env={"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "someone/some-encoder: speech encoder not found (download failed: " in proc.stderr.strip().splitlines()[-1]


def test_stage2_refuses_a_directory_that_is_not_a_model(sex_data, tmp_path):
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(ToolkitError) as e:
        generate_mel_spectrograms.main(["--load_csv_path", str(sex_data), "--save_spec_path", str(tmp_path),
                                        "--save_csv_path", str(tmp_path), "--category", "sex", "--features", "ssl",
                                        "--encoder", str(tmp_path / "not_a_model")])
    assert str(e.value) == (
        f"{tmp_path / 'not_a_model'}: not a transformers model directory (no config.json); pass a folder written "
        f"by save_pretrained or `hf download --local-dir`, or a hub id such as facebook/wav2vec2-base")
    assert not (tmp_path / "ssl").exists()  # refused before any clip was read


def test_a_text_model_is_refused(encoder, tmp_path):
    from transformers import BertConfig, BertModel

    from toolkit.features.encoders import build_encoder, encoder_info

    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16,
                         vocab_size=50)).save_pretrained(tmp_path / "bert")
    shutil.copy(f"{encoder}/preprocessor_config.json", tmp_path / "bert")
    with pytest.raises(ToolkitError, match="a BertModel takes input_ids, not the raw waveform; pass one of the encoders"):
        build_encoder(encoder_info(str(tmp_path / "bert")), pretrained=True)
    with pytest.raises(ToolkitError, match="no such directory, and not a Hugging Face hub id"):
        resolve_encoder("./no/such/../dir")


def test_a_model_at_another_sampling_rate_gets_audio_at_its_rate(tmp_path, sex_data):
    encoder = save_demo_encoder(str(tmp_path / "enc8k"), sr=8000)
    params = Ssl.params_from_args(Namespace(encoder=encoder, sr=16000, chunk_seconds=20.0, threads=None))
    assert params.sr == 8000
    clip = str(next((sex_data / "AudioWAV").glob("*.wav")))  # 16 kHz on disk
    assert Ssl(params).from_audio(clip).shape == (3, 32)


def test_very_short_and_very_long_clips(encoder, tmp_path):
    params = Ssl.params_from_args(Namespace(encoder=encoder, sr=16000, chunk_seconds=20.0, threads=None))
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "50ms.wav", 0.1 * rng.standard_normal(800).astype(np.float32), 16000)
    assert Ssl(params).from_audio(str(tmp_path / "50ms.wav")).shape == (3, 32)  # 2 frames: used
    # 10 minutes: chunks of at most 20 s reach the encoder, whatever the clip's length
    seen = []
    net = frozen_encoder(encoder)

    def spy(x, **kwargs):
        seen.append(x.shape[-1])
        return net(x, **kwargs)

    ten_minutes = torch.from_numpy(0.1 * rng.standard_normal(600 * 16000).astype(np.float32))
    with torch.inference_mode():
        states = pooled_states(spy, ten_minutes, 20 * 16000, all_layers=True)
    assert states.shape == (3, 32) and len(seen) == 30 and max(seen) <= 20 * 16000 and torch.isfinite(states).all()
    # fine-tuning and predict.py hold a long clip's central minute; a 50 ms clip is padded, not dropped
    stacked = Waveform().input.stack([np.zeros(600 * 16000, np.float32), np.ones(800, np.float32)], {"max_seconds": 2.0})
    assert stacked["x"].shape == (2, LONGEST_SAMPLES) and stacked["lengths"].tolist() == [LONGEST_SAMPLES, 800]
    assert int(stacked["x"][1].count_nonzero()) == 800 and not torch.isnan(stacked["x"]).any()  # zeros, not NaN, pad


def test_a_card_without_its_encoder_and_an_image_model_of_audio_are_one_line(finetuned, sex_data, tmp_path):
    shutil.copy(finetuned / "wav2vec2_sex.pt", tmp_path / "m.pt")
    card = json.loads((finetuned / "wav2vec2_sex.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**card, "init_detail": {}}))
    with pytest.raises(ToolkitError, match=r"m\.json: wav2vec2 is a fine-tuned speech encoder: its run card must describe"):
        load_trained_model(str(tmp_path / "m.pt"))
    with pytest.raises(ToolkitError, match=r"sex_train\.csv: holds image features, but wav2vec2 is a speech encoder "
                                           r"fine-tuned on the audio itself; train it with train_wav2vec2\.py"):
        train_cnn.main(["--csv_load_path", str(sex_data), "--model", "wav2vec2", "--epochs", "1", "--threads", "1",
                        "--model_save_path", str(tmp_path)])
