"""evaluate.py, the per-group report, fusion, and the seed's command lines that must not do something else."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import run_script
from models import build_model


def file_bytes(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_stage_4c_line_of_the_seed_readme_never_overwrites_stage_3s_model(trained_cnn3, sex_data, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(trained_cnn3, folder)
    before = file_bytes(folder)
    seed_line = ["--csv_load_path", sex_data, "--category", "sex", "--train_csv", "sex_train.csv", "--val_csv",
                 "sex_val.csv", "--test_csv", "sex_test.csv", "--epochs", "1", "--batch_size", "16", "--learning_rate",
                 "1e-3", "--model_save_and_load_path", folder, "--threads", "1"]
    proc = run_script("train_cnn.py", *seed_line, check=False, in_process=True)
    assert proc.returncode == 2 and "encoder_3_layers.pt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert file_bytes(folder) == before  # no autoencoder yet: stopped before writing anything

    torch.manual_seed(0)
    torch.save(build_model("cnn3", 2).encoder.state_dict(), folder / "encoder_3_layers.pt")
    proc = run_script("train_cnn.py", *seed_line, in_process=True)
    assert "running cnn_classifier.py" in proc.stdout
    card = json.loads((folder / "cnn3_ae_sex.json").read_text())
    assert card["init"] == ["autoencoder"] and card["training"]["epochs"] == 1
    after = file_bytes(folder)
    assert all(after[name] == data for name, data in before.items())  # stage 3's cnn3_sex.* untouched

    proc = run_script("train_cnn.py", *seed_line, "--model", "resnet18", check=False, in_process=True)
    assert proc.returncode == 2 and "that is stage 4c (cnn_classifier.py)" in proc.stderr


def test_train_wav2vec2_takes_model_dir(tmp_path):
    import train_wav2vec2

    args = train_wav2vec2.make_parser().parse_args(["--model_dir", str(tmp_path)])
    assert args.model_dir == str(tmp_path)


# ---- evaluate.py ---------------------------------------------------------------------------------------------------

def evaluate_run(*args, check=True):
    return run_script("evaluate.py", *args, "--device", "cpu", "--threads", "1", "--workers", "1", check=check,
                      in_process=True)


def assert_close(expected, got, path="") -> None:
    """Numbers to 1e-6, everything else equal, key by key."""
    if isinstance(expected, dict):
        assert set(expected) <= set(got), f"{path}: {set(expected) - set(got)} missing"
        for k in expected:
            assert_close(expected[k], got[k], f"{path}.{k}")
    elif isinstance(expected, list):
        assert len(expected) == len(got), path
        for i, (e, g) in enumerate(zip(expected, got)):
            assert_close(e, g, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert abs(expected - got) < 1e-6, f"{path}: {expected} != {got}"
    else:
        assert expected == got, f"{path}: {expected} != {got}"


def test_reproduces_the_test_metrics_stage_3_wrote(trained_cnn3, sex_data, tmp_path):
    evaluate_run("--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", sex_data / "sex_test.csv", "--out", tmp_path)
    stage3 = json.loads((trained_cnn3 / "cnn3_sex.json").read_text())["metrics"]["test"]
    got = json.loads((tmp_path / "cnn3_sex_evaluation.json").read_text())["test"]
    assert {"accuracy", "f1", "uar", "loss", "ece", "per_class", "per_speaker", "groups"} <= set(stage3)
    assert_close(stage3, got)  # to 1e-6: metrics, confusion matrix, per class, per speaker, the per-group report
    expected = pd.read_csv(trained_cnn3 / "cnn3_sex_test_predictions.csv")
    predicted = pd.read_csv(tmp_path / "cnn3_sex_predictions.csv")
    assert list(predicted["predicted"]) == list(expected["predicted"])
    np.testing.assert_allclose(predicted[["p_Male", "p_Female"]], expected[["p_Male", "p_Female"]], atol=2e-6)
    table = pd.read_csv(tmp_path / "evaluation.csv")
    assert list(table["model"]) == ["cnn3_sex"] and abs(table["f1"][0] - stage3["f1"]) < 1e-6
    for suffix in ("_confusion_matrix.png", "_reliability.png", "_speakers.png", "_groups.png", "_groups.csv"):
        assert (tmp_path / f"cnn3_sex{suffix}").stat().st_size > 0


@pytest.fixture(scope="module")
def other_recordings(sex_data, tmp_path_factory):
    """Training clips (not the test split) as someone else's recordings: 44.1 kHz stereo FLAC under new names, a
    manifest (path, gender, who) and the same clips in class folders."""
    import soundfile as sf
    import soxr

    root = tmp_path_factory.mktemp("other")
    train = pd.read_csv(sex_data / "sex_train.csv").groupby("ActorID").head(3)
    rows = []
    for i, (_, r) in enumerate(train.iterrows()):
        y, sr = sf.read(sex_data / r["Audio_file_path"], dtype="float32")
        y44 = soxr.resample(y, sr, 44100)
        name = f"take_{i:02d}.flac"
        for folder in (root / "clips", root / "by_class" / r["sex"] / f"spk{r['ActorID']}"):
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / name, np.stack([y44, 0.5 * y44], 1), 44100)
        rows.append({"path": f"clips/{name}", "gender": r["sex"], "who": f"spk{r['ActorID']}", "sex": r["sex"]})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def test_scores_a_manifest_of_other_recordings_as_predict_classifies_them(trained_cnn3, other_recordings, tmp_path):
    out = tmp_path / "eval"
    evaluate_run("--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", other_recordings / "manifest.csv",
                 "--audio_column", "path", "--label_column", "gender", "--speaker_column", "who", "--out", out)
    manifest = pd.read_csv(other_recordings / "manifest.csv")
    got = pd.read_csv(out / "cnn3_sex_predictions.csv")
    assert len(got) == len(manifest) and set(got["ActorID"]) == set(manifest["who"])
    files = [str(other_recordings / p) for p in manifest["path"]]
    run_script("predict.py", "--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", *files, "--out",
               tmp_path / "p.csv", "--device", "cpu", "--threads", "1", in_process=True)
    predicted = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(got[["p_Male", "p_Female"]], predicted[["p_Male", "p_Female"]], atol=2e-6)
    report = json.loads((out / "cnn3_sex_evaluation.json").read_text())["test"]
    assert report["groups"]["overall"]["speakers"] == manifest["who"].nunique()
    assert "sex" in report["groups"]["columns"]  # the manifest's demographic column, found by itself
    evaluate_run("--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", other_recordings / "by_class", "--out", tmp_path / "folders")
    by_folder = json.loads((tmp_path / "folders" / "cnn3_sex_evaluation.json").read_text())
    assert by_folder["clips"] == len(manifest) and abs(by_folder["test"]["f1"] - report["f1"]) < 1e-6
    assert len(by_folder["test"]["per_speaker"]) == manifest["who"].nunique()  # the folder below the class


def spoiled_copy(trained_cnn3, folder, **changes):
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(trained_cnn3 / "cnn3_sex.pt", folder / "cnn3_other.pt")
    card = json.loads((trained_cnn3 / "cnn3_sex.json").read_text())
    (folder / "cnn3_other.json").write_text(json.dumps({**card, **changes}))
    return folder / "cnn3_other.pt"


@pytest.mark.parametrize("case, message", [
    ("unknown label", "label(s) ['Other'] in column 'gender' are not classes of cnn3_sex.pt (Male, Female)"),
    ("no label column", "no label column 'emotion'"),
    ("other classes", "fuse models trained on the same classes"),
    ("other category", "fuse models of one category"),
    ("speaker features, no speakers", "trained with --normalize speaker, which needs each clip's speaker"),
])
def test_mismatches_are_one_line_and_write_nothing(trained_cnn3, other_recordings, tmp_path, case, message):
    manifest = pd.read_csv(other_recordings / "manifest.csv")
    csv = tmp_path / "manifest.csv"
    (manifest.assign(gender=["Other"] + list(manifest["gender"][1:])) if case == "unknown label" else manifest).to_csv(csv, index=False)
    (tmp_path / "clips").symlink_to(other_recordings / "clips")
    models = ["--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt"]
    flags = ["--audio_column", "path", "--label_column", "gender"]
    if case == "no label column":
        models, flags = ["--model_file", spoiled_copy(trained_cnn3, tmp_path / "m", category="emotion",
                                                      classes=["ANG", "DIS"])], ["--audio_column", "path"]
    elif case == "other classes":
        models += ["--model_file", spoiled_copy(trained_cnn3, tmp_path / "m", classes=["Male", "Unknown"]), "--fuse"]
    elif case == "other category":
        models += ["--model_file", spoiled_copy(trained_cnn3, tmp_path / "m", category="gender"), "--fuse"]
    elif case == "speaker features, no speakers":
        models = ["--model_file", spoiled_copy(trained_cnn3, tmp_path / "m", normalize="speaker")]
    out = tmp_path / "out"
    proc = evaluate_run(*models, csv, *flags, "--out", out, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert not list(out.iterdir())


# ---- the per-group report -------------------------------------------------------------------------------------------

def synthetic_predictions(accuracy: dict, speakers: dict, clips: int = 12, seed: int = 0) -> pd.DataFrame:
    """Speakers of each group classified right with the group's accuracy (two classes, balanced)."""
    rng = np.random.default_rng(seed)
    rows, n = [], 0
    for group, count in speakers.items():
        for _ in range(count):
            n += 1
            for c in range(clips):
                y = c % 2
                rows.append({"ActorID": f"s{n}", "race": group, "y": y,
                             "p": y if rng.random() < accuracy[group] else 1 - y})
    return pd.DataFrame(rows)


def test_a_known_gap_is_detected_and_a_one_speaker_group_is_flagged_not_ranked():
    from toolkit.evaluation.fairness import fairness_report, fairness_rows, group_columns

    frame = synthetic_predictions({"A": 0.95, "B": 0.6, "C": 0.2}, {"A": 12, "B": 12, "C": 1})
    assert group_columns(frame) == ["race"]
    report = fairness_report(frame, frame["y"], frame["p"], ["x", "y"], ["race"])
    race = report["columns"]["race"]
    assert race["stratified"] and race["metric"] == "f1" and race["ranked"] == ["A", "B"] and race["not_ranked"] == ["C"]
    assert race["worst"]["group"] == "B"  # C is worse, but one voice is not a group
    low, high = race["gap"]["ci"]
    assert 0.15 < low <= race["gap"]["value"] <= high and abs(race["gap"]["value"] - 0.35) < 0.1
    assert race["groups"]["A"]["f1_ci"][0] > race["groups"]["B"]["f1_ci"][1]  # the intervals do not overlap
    assert race["groups"]["C"]["speakers"] == 1 and not race["groups"]["C"]["ranked"]
    overall = report["overall"]
    assert overall["f1_ci"][0] < overall["f1"] < overall["f1_ci"][1] and overall["speakers"] == 25
    rows = fairness_rows(report).set_index("group")
    assert rows.loc["B", "note"] == "worst" and "not ranked" in rows.loc["C", "note"]

    same = synthetic_predictions({"A": 0.8, "B": 0.8}, {"A": 15, "B": 15}, seed=1)
    gap = fairness_report(same, same["y"], same["p"], ["x", "y"], ["race"])["columns"]["race"]["gap"]
    assert gap["ci"][0] < 0.05  # no real difference: the interval reaches down to about zero

    # grouped by the label itself (each group one class): a group's F1 has precision 1 built in; accuracy ranks
    by_label = frame.assign(label=frame["y"].map({0: "x", 1: "y"}))
    column = fairness_report(by_label, by_label["y"], by_label["p"], ["x", "y"], ["label"])["columns"]["label"]
    assert column["metric"] == "accuracy" and column["groups"]["x"]["f1"] > column["groups"]["x"]["accuracy"]


def test_stage_3_writes_the_per_group_report(trained_cnn3):
    groups = json.loads((trained_cnn3 / "cnn3_sex.json").read_text())["metrics"]["test"]["groups"]
    assert groups["bootstrap"]["unit"] == "speaker" and "sex" in groups["columns"]
    assert set(groups["columns"]) <= {"sex", "age", "race", "Ethnicity"}  # columns with 2 or more groups here
    table = pd.read_csv(trained_cnn3 / "cnn3_sex_groups.csv")
    assert table["group"].iloc[0] == "(all)" and (trained_cnn3 / "cnn3_sex_groups.png").stat().st_size > 0


# ---- fusion ----------------------------------------------------------------------------------------------------------

def test_fusion_of_one_member_is_that_member_exactly(trained_cnn3, sex_data, tmp_path, monkeypatch):
    import predict
    from toolkit.evaluation.fusion import choose_weights, fuse

    p = np.random.default_rng(0).dirichlet([1, 1, 1], size=20).astype(np.float32)
    assert np.array_equal(fuse([p]), p) and np.array_equal(fuse([p], [3.0]), p)
    np.testing.assert_allclose(fuse([p, p], [1, 2]), p, atol=1e-7)
    y = p.argmax(1)
    assert choose_weights([np.full_like(p, 1 / 3), p], y) == [0.0, 1.0]  # the informative member gets the weight

    evaluate_run("--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", sex_data / "sex_test.csv", "--fuse",
                 "--out", tmp_path)
    single = json.loads((tmp_path / "cnn3_sex_evaluation.json").read_text())
    fused = json.loads((tmp_path / "fused_sex_evaluation.json").read_text())
    assert fused["test"] == single["test"] and fused["fusion"]["weights"] == [1.0]
    a, b = pd.read_csv(tmp_path / "cnn3_sex_predictions.csv"), pd.read_csv(tmp_path / "fused_sex_predictions.csv")
    pd.testing.assert_frame_equal(a, b)
    assert list(pd.read_csv(tmp_path / "evaluation.csv")["model"]) == ["cnn3_sex", "fused_sex"]

    clips = [str(sex_data / p) for p in a["Audio_file_path"][:3]]
    titles = []
    monkeypatch.setattr(predict, "plot_recording", lambda image, params, path, title, *rest: titles.append(title))
    run_script("predict.py", "--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", *clips, "--fuse", "--out",
               tmp_path / "p.csv", "--plot", tmp_path / "plots", "--device", "cpu", "--threads", "1", in_process=True)
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert list(predicted.columns[-4:]) == ["fused_predicted", "fused_p_Male", "fused_p_Female", "error"]
    assert list(predicted["fused_predicted"]) == list(predicted["predicted"])
    assert predicted["fused_p_Male"].tolist() == predicted["p_Male"].tolist()
    # the spectrogram's title leads with the fused label, then each member's
    first = predicted.iloc[0]
    assert titles[0].startswith(f"{a['Audio_file_path'][0].split('/')[-1]}: fused {first['fused_predicted']} "
                                f"({max(first['fused_p_Male'], first['fused_p_Female']):.2f}), sex ")


# ---- folds that do not depend on the feature type, and fused cross-validation ---------------------------------------

def all_rows(folder) -> pd.DataFrame:
    return pd.concat([pd.read_csv(folder / f"sex_{s}.csv") for s in ("train", "val", "test")], ignore_index=True)


def test_two_feature_types_get_the_same_folds_whatever_their_rows(sex_data, egemaps_data):
    from toolkit.training.crossval import fold_assignment, fold_splits

    mel = all_rows(sex_data)
    egemaps = all_rows(egemaps_data).sample(frac=1, random_state=3).iloc[1:]  # other order, one clip failed
    assert "Image_file_path" in mel and "egemaps_file_path" in egemaps
    assert fold_assignment(mel, "sex", 4, 42) == fold_assignment(egemaps, "sex", 4, 42)
    assert fold_assignment(mel, "sex", 4, 42) != fold_assignment(mel, "sex", 4, 7)  # the seed does change them
    for a, b in zip(fold_splits(mel, "sex", 4, 42), fold_splits(egemaps.reset_index(drop=True), "sex", 4, 42)):
        for part in ("train", "val", "test"):
            assert set(mel["ActorID"].iloc[a[part]]) == set(egemaps["ActorID"].iloc[b[part]])


def test_fused_cross_validation_of_runs_on_the_same_folds(egemaps_data, tmp_path):
    from toolkit.training.crossval import fold_assignment

    run_script("train_cnn.py", "--csv_load_path", egemaps_data, "--category", "sex", "--model", "mlp", "--folds", "2",
               "--epochs", "1", "--batch_size", "16", "--threads", "1", "--model_save_path", tmp_path / "a", in_process=True)
    cv = json.loads((tmp_path / "a" / "mlp_sex_cv.json").read_text())
    assignment = cv["run"]["split"]["assignment"]
    assert assignment["fold_of_speaker"] == fold_assignment(all_rows(egemaps_data), "sex", 2, 42)
    assert "groups" in cv["pooled_test"] and (tmp_path / "a" / "mlp_sex_cv_groups.png").is_file()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    members = ["--cv_run", tmp_path / "a" / "mlp_sex_cv.json", "--cv_run", tmp_path / "b" / "mlp_sex_cv.json"]
    evaluate_run(*members, "--fuse_weights", "validation", "--out", tmp_path / "fused")
    fused = json.loads((tmp_path / "fused" / "fused_sex_cv.json").read_text())
    for mine, theirs in zip(fused["fold_results"], cv["fold_results"]):  # twice the same model: that model
        assert mine["test_speakers"] == theirs["test_speakers"] and mine["weights"] == [0.5, 0.5]
        for k in ("accuracy", "f1", "uar"):
            assert abs(mine["test"][k] - theirs["test"][k]) < 1e-9
        assert abs(mine["test"]["ece"] - theirs["test"]["ece"]) < 1e-5
    assert fused["pooled_test"]["groups"]["overall"]["speakers"] == len(assignment["fold_of_speaker"])

    card = tmp_path / "b" / "mlp_sex_cv.json"
    spoiled = json.loads(card.read_text())
    spoiled["run"]["split"]["assignment"]["fold_of_speaker"] = {s: 1 for s in assignment["fold_of_speaker"]}
    card.write_text(json.dumps(spoiled))
    proc = evaluate_run(*members, "--out", tmp_path / "refused", check=False)
    assert proc.returncode == 2 and "its folds are not" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# ---- the seed's wav2vec2 scripts, as its command lines are written ---------------------------------------------------

def test_the_seed_wav2vec2_command_lines_run_as_written(sex_data, tmp_path):
    """training_wav2vec2.py and evaluate_wav2vec2.py with the seed's flags; 'facebook/wav2vec2-base' (the seed's
    encoder) is a tiny random one placed in a Hugging Face cache, offline, as a downloaded model would be (evaluation
    needs only the .pt and its card)."""
    from demo.encoder import save_demo_encoder

    entry = tmp_path / "hf" / "models--facebook--wav2vec2-base"
    save_demo_encoder(str(entry / "snapshots" / ("0" * 40)))
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0" * 40)
    env = {"HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run_script("training_wav2vec2.py", "--csv_load_path", f"{sex_data}/", "--category", "sex", "--model_save_name",
               "sex", "--model_save_path", f"{tmp_path}/models/", "--train_csv", "sex_train.csv", "--val_csv",
               "sex_val.csv", "--epochs", "1", "--batch_size", "8", env=env)
    card = json.loads((tmp_path / "models" / "sex.json").read_text())
    assert card["model"] == "wav2vec2" and card["init_detail"]["encoder"]["source"] == "facebook/wav2vec2-base"
    proc = run_script("evaluate_wav2vec2.py", "--csv_load_path", f"{sex_data}/", "--category", "sex",
                      "--model_load_path", f"{tmp_path}/models/", "--model_dir_path", f"{tmp_path}/eval/",
                      "--test_csv", "sex_test.csv", "--epochs", "20", "--batch_size", "4", in_process=True)
    assert "true \\ pred" in proc.stdout
    got = json.loads((tmp_path / "eval" / "sex_evaluation.json").read_text())["test"]
    for k in ("accuracy", "f1", "uar"):
        assert abs(got[k] - card["metrics"]["test"][k]) < 1e-6
    assert abs(got["loss"] - card["metrics"]["test"]["loss"]) < 1e-5
