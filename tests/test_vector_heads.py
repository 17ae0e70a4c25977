"""The vector heads reach their optimum: `linear` (full-batch L-BFGS, the `vector` recipe) matches scikit-learn's
StandardScaler + LogisticRegression on the same features and speakers, `mlp` is at least as good; the chosen L2
strength is in the run card; --resume of a full-batch fit ends where an uninterrupted one does."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss
from sklearn.preprocessing import StandardScaler

import conftest
from toolkit.config import RECIPES
from toolkit.features import Egemaps
from toolkit.training import engine

CLASSES = ["ANG", "DIS", "FEA", "HAP"]
SPEAKERS = {"train": range(0, 24), "val": range(24, 30), "test": range(30, 40)}


def run_script(*args, check=True):
    return conftest.run_script("train_cnn.py", *args, check=check, in_process=True)


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    """A fixed 4-class problem (40 speakers × 20 clips, 30 values, 10 informative, some label noise) written as
    stage-2 vector features: one .npy per clip and emotion_train/val/test.csv, as stage 2 writes them."""
    out = tmp_path_factory.mktemp("vectors")
    x, y = make_classification(n_samples=800, n_features=30, n_informative=10, n_redundant=5, n_classes=4,
                               n_clusters_per_class=2, class_sep=0.8, flip_y=0.05, random_state=0)
    x = x * np.linspace(0.5, 50, 30) + np.linspace(-100, 100, 30)  # unstandardised scales, as eGeMAPS' are
    (out / "egemaps").mkdir()
    rows = []
    for i, (values, label) in enumerate(zip(x, y)):
        path = out / "egemaps" / f"clip{i:04d}.npy"
        Egemaps().storage.save(values.astype(np.float32), str(path))
        rows.append({"emotion": CLASSES[label], "Audio_file_name": f"clip{i:04d}", "Audio_file_path": f"clip{i:04d}.wav",
                     "ActorID": 1000 + i // 20, "egemaps_file_path": f"egemaps/clip{i:04d}.npy"})
    table = pd.DataFrame(rows)
    for split, speakers in SPEAKERS.items():
        table[(table["ActorID"] - 1000).isin(speakers)].to_csv(out / f"emotion_{split}.csv", index=False)
    return out


def split_arrays(folder, split):
    table = pd.read_csv(folder / f"emotion_{split}.csv")
    x = np.stack([np.load(folder / p) for p in table["egemaps_file_path"]]).astype(np.float64)
    return x, table["emotion"].map(CLASSES.index).to_numpy()


def sklearn_f1(folder, c: float | None = None) -> tuple[float, float]:
    """(test weighted F1, C) of StandardScaler + LogisticRegression fitted on train; C given, or the one of the
    toolkit's path with the lowest validation loss (the toolkit's own choice, made the scikit-learn way)."""
    (xtr, ytr), (xva, yva), (xte, yte) = (split_arrays(folder, s) for s in ("train", "val", "test"))
    scaler = StandardScaler().fit(xtr)

    def fitted(c):
        return LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(scaler.transform(xtr), ytr)

    if c is None:
        c = min(RECIPES["vector"].C, key=lambda c: log_loss(yva, fitted(c).predict_proba(scaler.transform(xva))))
    return f1_score(yte, fitted(c).predict(scaler.transform(xte)), average="weighted"), c


def train(folder, out, model, *flags):
    run_script("--csv_load_path", folder, "--category", "emotion", "--model", model, "--threads", "1",
               "--model_save_path", out, *flags)
    return json.loads((out / f"{model}_emotion.json").read_text())


def test_linear_at_a_given_C_matches_scikit_learn(vectors, tmp_path):
    card = train(vectors, tmp_path, "linear", "--C", "1")
    expected, _ = sklearn_f1(vectors, 1.0)
    assert card["training"]["recipe"] == "vector" and card["training"]["optimizer"] == "lbfgs"
    assert card["training"]["lbfgs"]["C"] == 1.0 and card["training"]["C"] == [1.0] and card["training"]["epochs"] == 1
    assert abs(card["metrics"]["test"]["f1"] - expected) <= 0.01, (card["metrics"]["test"]["f1"], expected)


def test_linear_chooses_C_on_validation_like_scikit_learn_and_mlp_is_as_good(vectors, tmp_path):
    card = train(vectors, tmp_path / "linear", "linear")
    expected, c = sklearn_f1(vectors)
    fit = card["training"]["lbfgs"]
    assert card["training"]["C"] == pytest.approx([10.0 ** k for k in range(-4, 5)])  # scikit-learn's range, a value a decade
    assert fit["C"] == pytest.approx(c) and len(fit["tried"]) >= 5 and fit["tried"][0]["C"] == pytest.approx(1e-4)
    assert abs(card["metrics"]["test"]["f1"] - expected) <= 0.01, (card["metrics"]["test"]["f1"], expected)
    mlp = train(vectors, tmp_path / "mlp", "mlp")
    assert mlp["metrics"]["test"]["f1"] >= expected - 0.01, (mlp["metrics"]["test"]["f1"], expected)


def test_resume_of_a_full_batch_fit_ends_where_an_uninterrupted_one_does(vectors, tmp_path, monkeypatch):
    whole = train(vectors, tmp_path / "whole", "linear", "--C", "0.01", "0.1", "1", "10", "100")
    make_step = engine.full_batch_step

    def interrupted_after_3(*args, **kwargs):
        step = make_step(*args, **kwargs)

        def run(net, optimizer, epoch, generator):
            if epoch == 4:
                raise KeyboardInterrupt  # Ctrl-C during the 4th C: epochs 1-3 are in linear_emotion_last.pt
            return step(net, optimizer, epoch, generator)
        return run

    monkeypatch.setattr(engine, "full_batch_step", interrupted_after_3)
    proc = run_script("--csv_load_path", vectors, "--category", "emotion", "--model", "linear", "--threads", "1",
                      "--C", "0.01", "0.1", "1", "10", "100", "--model_save_path", tmp_path / "cut", check=False)
    assert proc.returncode == 130
    monkeypatch.setattr(engine, "full_batch_step", make_step)
    resumed = train(vectors, tmp_path / "cut", "linear", "--C", "0.01", "0.1", "1", "10", "100", "--resume")
    assert resumed["training"]["lbfgs"] == whole["training"]["lbfgs"]
    a, b = (torch.load(tmp_path / run / "linear_emotion.pt", weights_only=True) for run in ("whole", "cut"))
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_settings_lbfgs_cannot_honour_are_one_line_errors(vectors, tmp_path, sex_data):
    proc = run_script("--csv_load_path", vectors, "--category", "emotion", "--model", "linear", "--mixup", "0.2",
                      "--model_save_path", tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].endswith(
        "--mixup with --optimizer lbfgs: a full-batch fit has one fixed objective, mixup draws new mixtures every "
        "batch; drop --mixup or use --optimizer adamw")
    proc = run_script("--csv_load_path", sex_data, "--category", "sex", "--model", "cnn3", "--optimizer", "lbfgs",
                      "--model_save_path", tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].endswith(
        "sex_train.csv: --optimizer lbfgs fits the vector heads (linear, mlp) on vector features; these are image "
        "features: use --optimizer adamw")
    assert not list(tmp_path.glob("*.pt"))


def test_compare_heads_scores_scikit_learn_on_the_toolkits_own_folds(vectors, tmp_path, stages_in_process):
    import compare_heads

    compare_heads.main(["--data", str(vectors), "--out", str(tmp_path), "--categories", "emotion", "--normalize", "none",
                        "--models", "linear", "--recipes", "vector", "--folds", "2"])
    rows = {r["name"]: r for r in json.loads((tmp_path / "compare_heads.json").read_text())}
    cv = json.loads((tmp_path / "emotion_none" / "vector" / "linear_emotion_cv.json").read_text())
    assert all(f["val_speakers"] and not set(f["val_speakers"]) & set(f["test_speakers"]) for f in cv["fold_results"])
    toolkit, sklearn = rows["toolkit linear, --recipe vector (full-batch L-BFGS)"], rows["sklearn LR, C on validation"]
    assert toolkit["C"] == sklearn["C"]  # the same C values chosen on the same validation speakers
    assert np.allclose(toolkit["f1_folds"], sklearn["f1_folds"], atol=0.01)
    assert "| emotion | none | sklearn LR C=1 |" in (tmp_path / "compare_heads.md").read_text()
