"""Deployment: ONNX export (same logits as torch), predict.py --backend onnx (same CSV, no torch), the Python API
(docs/deploy.md's example runs; same numbers as predict.py) and the out-of-domain score and flag."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import predict
from conftest import ROOT, run_script
from models.api import load_classifier

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def clips(sex_data, tmp_path_factory):
    """Four test clips and a long recording made of three of them (several windows)."""
    table = pd.read_csv(sex_data / "sex_test.csv")
    found = [str((sex_data / p).resolve()) for p in table["Audio_file_path"]]
    long = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(long, np.concatenate([sf.read(c, dtype="float32")[0] for c in found[:3]]), 16000)
    return found[:4] + [str(long)]


@pytest.fixture(scope="module")
def exported_cnn3(trained_cnn3, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "cnn3_sex_onnx"
    proc = run_script("export_onnx.py", "--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", "--out", out,
                      "--check_clips", "6", "--threads", "1", in_process=True)
    return out, proc.stdout


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_export_of_a_mel_cnn_reproduces_torch_and_holds_plain_files(exported_cnn3, trained_cnn3):
    out, stdout = exported_cnn3
    assert re.search(r"onnxruntime reproduces the torch logits within 0.0001 \(largest difference .* over 6 window",
                     last_line(stdout))
    assert sorted(os.listdir(out)) == ["card.json", "frontend.json", "mel_filterbank.npy", "model.onnx", "stft_window.npy"]
    front = json.loads((out / "frontend.json").read_text())
    assert front["feature"] == "mel" and front["classes"] == ["Male", "Female"] and front["temperature"] > 0
    from toolkit.features.mel import MelParams, mel_basis

    filterbank = np.load(out / "mel_filterbank.npy", allow_pickle=False)  # plain arrays, no pickles
    np.testing.assert_array_equal(filterbank, mel_basis(MelParams(**front["params"])))
    assert np.load(out / "stft_window.npy", allow_pickle=False).shape == (front["params"]["n_fft"],)
    assert json.loads((out / "card.json").read_text())["domain"] == json.loads((trained_cnn3 / "cnn3_sex.json").read_text())["domain"]


def test_export_of_a_vector_head_reproduces_torch(mlp_model, tmp_path):
    out = tmp_path / "mlp_onnx"
    proc = run_script("export_onnx.py", "--model_file", mlp_model / "mlp_sex.pt", "--out", out, "--check_clips", "4",
                      "--threads", "1", in_process=True)
    assert "onnxruntime reproduces the torch logits within 0.0001" in last_line(proc.stdout)
    assert {"input_mean.npy", "input_std.npy", "model.onnx"} <= set(os.listdir(out))
    assert np.load(out / "input_std.npy", allow_pickle=False).shape == (88,)


def predictions(path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False)


def assert_same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    for column in a.columns:
        if pd.api.types.is_float_dtype(a[column]):
            np.testing.assert_allclose(a[column], b[column], atol=TOLERANCE, rtol=0)
        else:
            assert a[column].tolist() == b[column].tolist(), column


@pytest.mark.parametrize("per_window, workers", [(False, "1"), (True, "1"), (False, "2")])
def test_predict_onnx_backend_writes_the_torch_backends_csv(trained_cnn3, exported_cnn3, clips, tmp_path, per_window,
                                                             workers):
    out, _ = exported_cnn3
    extra = ["--per_window"] if per_window else []
    common = [*clips, "--threads", "1", "--workers", workers, *extra]  # 2 workers: the files decoded in a pool
    predict.main(["--model_file", str(trained_cnn3 / "cnn3_sex.pt"), "--out", str(tmp_path / "torch.csv"), "--device", "cpu", *common])
    predict.main(["--backend", "onnx", "--model_file", str(out), "--out", str(tmp_path / "onnx.csv"), *common])
    torch_table, onnx_table = predictions(tmp_path / "torch.csv"), predictions(tmp_path / "onnx.csv")
    assert "distance" in torch_table.columns and "unlike_training" in torch_table.columns
    assert len(torch_table) == len(clips) if not per_window else len(torch_table) > len(clips)  # the long one: windows
    assert_same_table(torch_table, onnx_table)


def test_onnx_backend_runs_where_torch_cannot_be_imported(exported_cnn3, clips, tmp_path):
    out, _ = exported_cnn3
    csv = tmp_path / "p.csv"
    code = ("import sys\n"
            "class NoTorch:  # any 'import torch' now fails\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch': raise ImportError('torch is blocked')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "import predict\n"
            f"predict.main(['--backend', 'onnx', '--model_file', {str(out)!r}, {clips[0]!r}, '--out', {str(csv)!r}, "
            "'--threads', '1'])\n"
            "print('torch loaded:', any(m == 'torch' or m.startswith('torch.') for m, v in sys.modules.items() if v))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "torch loaded: False" in proc.stdout
    assert predictions(csv)["predicted"].tolist()[0] in ("Male", "Female")


def test_api_gives_predict_pys_numbers(trained_cnn3, clips, tmp_path):
    csv = tmp_path / "p.csv"
    predict.main(["--model_file", str(trained_cnn3 / "cnn3_sex.pt"), *clips, "--out", str(csv), "--device", "cpu",
                  "--threads", "1", "--workers", "1"])
    table = predictions(csv).set_index("file")
    clf = load_classifier(str(trained_cnn3 / "cnn3_sex.pt"), device="cpu")
    for clip in clips:
        result = clf.predict(clip)
        row = table.loc[clip]
        assert result.predicted == row["predicted"] and len(result.windows) == row["windows"]
        for c in clf.classes:
            assert abs(result.probabilities[c] - row[f"p_{c}"]) < 1e-6
        assert abs(result.distance - row["distance"]) < 1e-5 and result.unlike_training == (str(row["unlike_training"]) == "True")
    samples, sr = sf.read(clips[-1], dtype="float32")
    stereo_44k = np.stack([samples, samples], axis=1)
    import soxr

    again = clf.predict(soxr.resample(stereo_44k, sr, 44100), 44100)  # another rate and two channels: resampled back
    assert again.predicted == clf.predict(clips[-1]).predicted and len(again.windows) == len(clf.predict(clips[-1]).windows)


def test_api_example_in_the_docs_runs(trained_cnn3, exported_cnn3, clips, tmp_path):
    doc = (ROOT / "docs" / "deploy.md").read_text()
    example = re.search(r"<!-- api-example -->\n```python\n(.*?)```", doc, re.S).group(1)
    (tmp_path / "Models" / "demo").mkdir(parents=True)
    for name in ("cnn3_sex.pt", "cnn3_sex.json"):
        shutil.copy(trained_cnn3 / name, tmp_path / "Models" / "demo" / name)
    shutil.copytree(exported_cnn3[0], tmp_path / "Models" / "demo" / "cnn3_sex_onnx")
    shutil.copy(clips[-1], tmp_path / "a.wav")
    proc = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert re.fullmatch(r"(Male|Female) \{'Male': [0-9.e-]+, 'Female': [0-9.e-]+\}", first)
    assert len([line for line in proc.stdout.splitlines() if re.match(r"\d+\.\d\d-\d+\.\d\d s ", line)]) >= 2


def test_card_threshold_is_the_99th_percentile_of_validation_distances(trained_cnn3, sex_data, tmp_path):
    card = json.loads((trained_cnn3 / "cnn3_sex.json").read_text())
    domain = card["domain"]
    assert domain["dim"] == 64 and len(domain["components"]) == 16 and len(domain["mean"]) == 64
    assert domain["train_items"] == card["split"]["clips"]["train"] and domain["val_items"] == card["split"]["clips"]["val"]
    val = [str((sex_data / p).resolve()) for p in pd.read_csv(sex_data / "sex_val.csv")["Audio_file_path"]]
    csv = tmp_path / "val.csv"
    predict.main(["--model_file", str(trained_cnn3 / "cnn3_sex.pt"), *val, "--out", str(csv), "--device", "cpu",
                  "--threads", "1", "--workers", "1"])
    distances = predictions(csv)["distance"].astype(float)
    assert abs(np.quantile(distances, 0.99) - domain["threshold"]) < 1e-3  # predict.py measures what training did
    flagged = predictions(csv)["unlike_training"].astype(str) == "True"
    assert flagged.sum() == (distances > domain["threshold"]).sum() <= 1


def test_a_card_without_the_summary_gives_no_flag(trained_cnn3, clips, tmp_path):
    for name in ("cnn3_sex.pt", "cnn3_sex.json"):
        shutil.copy(trained_cnn3 / name, tmp_path / name)
    card = json.loads((tmp_path / "cnn3_sex.json").read_text())
    del card["domain"]
    (tmp_path / "cnn3_sex.json").write_text(json.dumps(card))
    predict.main(["--model_file", str(tmp_path / "cnn3_sex.pt"), clips[0], "--out", str(tmp_path / "p.csv"), "--device", "cpu"])
    assert list(predictions(tmp_path / "p.csv").columns) == ["file", "seconds", "windows", "predicted", "p_Male", "p_Female", "error"]
    result = load_classifier(str(tmp_path / "cnn3_sex.pt"), device="cpu").predict(clips[0])
    assert result.distance is None and result.unlike_training is None


def test_broken_summary_or_export_is_one_line(trained_cnn3, exported_cnn3, clips, tmp_path):
    for name in ("cnn3_sex.pt", "cnn3_sex.json"):
        shutil.copy(trained_cnn3 / name, tmp_path / name)
    card = json.loads((tmp_path / "cnn3_sex.json").read_text())
    card["domain"]["variances"][0] = -1.0
    (tmp_path / "cnn3_sex.json").write_text(json.dumps(card))
    proc = run_script("predict.py", "--model_file", tmp_path / "cnn3_sex.pt", clips[0], check=False, in_process=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "cnn3_sex.json: the run card's 'domain' entry is broken (it holds non-finite or non-positive variances)" in proc.stderr

    proc = run_script("predict.py", "--backend", "onnx", "--model_file", tmp_path / "cnn3_sex.pt", clips[0], check=False,
                      in_process=True)  # no export beside it
    assert proc.returncode == 2 and "cnn3_sex_onnx: not an ONNX export folder (no frontend.json); make one with" in proc.stderr

    broken = tmp_path / "broken_onnx"
    shutil.copytree(exported_cnn3[0], broken)
    np.save(broken / "mel_filterbank.npy", np.zeros((3, 3), np.float32))
    proc = run_script("predict.py", "--backend", "onnx", "--model_file", broken, clips[0], check=False, in_process=True)
    assert proc.returncode == 2 and "mel_filterbank.npy: not the export's array (shape (3, 3)" in proc.stderr

    shutil.copy(exported_cnn3[0] / "mel_filterbank.npy", broken / "mel_filterbank.npy")
    front = json.loads((broken / "frontend.json").read_text())
    (broken / "frontend.json").write_text(json.dumps({**front, "window_seconds": "long"}))
    proc = run_script("predict.py", "--backend", "onnx", "--model_file", broken, clips[0], check=False, in_process=True)
    assert proc.returncode == 2 and "frontend.json: 'input' or 'window_seconds' is not what export_onnx.py writes" in proc.stderr


def test_export_fails_in_one_line_and_writes_nothing(trained_cnn3, tmp_path):
    for name in ("cnn3_sex.pt", "cnn3_sex.json"):
        shutil.copy(trained_cnn3 / name, tmp_path / name)
    card = json.loads((tmp_path / "cnn3_sex.json").read_text())
    card["split"]["csvs"]["test"] = str(tmp_path / "gone.csv")
    (tmp_path / "cnn3_sex.json").write_text(json.dumps(card))
    proc = run_script("export_onnx.py", "--model_file", tmp_path / "cnn3_sex.pt", check=False, in_process=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(f"its test CSV '{tmp_path / 'gone.csv'}' is not here to check the export on; "
                                        f"pass --check_audio FILES")
    assert sorted(os.listdir(tmp_path)) == ["cnn3_sex.json", "cnn3_sex.pt"]


def test_web_demo_warns_about_a_voice_unlike_the_training_voices(trained_cnn3):
    import app
    from toolkit.runcard import read_card

    card = read_card(str(trained_cnn3 / "cnn3_sex.pt"))
    probs = np.array([0.7, 0.3])
    assert "unlike the training voices: treat the answer with caution" in app.result_html(card, probs, True, 99.0)
    assert "caution" not in app.result_html(card, probs, False, 1.0)
