"""experiments/compare_recipes.py end to end at toy size: corpora, both image kinds, CV per recipe, variant and seed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ROOT, run_script


def test_compare_recipes_runs_every_configuration_on_the_same_folds(tmp_path, stages_in_process, monkeypatch):
    markdown = tmp_path / "RESULTS.md"
    markdown.write_text("# notes kept\n\n<!-- compare_recipes.py: table -->\nold table\n<!-- /table -->\n\nanalysis kept\n")
    monkeypatch.setattr("sys.argv", ["compare_recipes.py", "--out", str(tmp_path / "cmp"), "--actors", "6",
                                     "--clips_per_actor", "6", "--unseen_actors", "4", "--categories", "sex", "--folds", "2",
                                     "--epochs", "1", "--seeds", "1", "2", "--workers", "1", "--variants",
                                     "nogain=--gain_db 0", "--markdown", str(markdown)])
    stages_in_process.main()  # every stage in this process (conftest.stages_in_process)
    text = markdown.read_text()
    assert "old table" not in text and text.startswith("# notes kept") and text.rstrip().endswith("analysis kept")
    main_table = text[: text.index("Over seeds")]
    # (--vector_models adds eGeMAPS rows the same way; cross-validation on eGeMAPS is tested in test_egemaps.py)
    for model, features, recipe in [("cnn3", "mel", "seed"), ("cnn3", "mel", "default"), ("cnn3", "mel", "nogain")]:
        assert f"| sex | {model} | {features} | {recipe} |" in main_table
        assert text.count(f"| sex | {model} | {features} | {recipe} |") == 2  # once per table
    models = tmp_path / "cmp" / "models"
    runs = {p.parent.name: json.loads(p.read_text()) for p in models.glob("*/*_sex_cv.json")}
    assert set(runs) == {"seed", "default", "nogain", "seed_seed2", "default_seed2", "nogain_seed2"}
    training = {name: run["run"]["training"] for name, run in runs.items()}
    assert training["nogain"]["gain_db"] == 0 and training["default"]["gain_db"] == 6 and training["seed"]["recipe"] == "seed"
    params = {name: run["run"]["features"]["params"] for name, run in runs.items()}
    assert params["seed"]["db_ref"] == "max" and params["nogain"]["db_ref"] == "fixed"
    for seed in ("", "_seed2"):  # within a seed every configuration was tested on the same speakers
        folds = {tuple(tuple(f["test_speakers"]) for f in runs[r + seed]["fold_results"])
                 for r in ("seed", "default", "nogain")}
        assert len(folds) == 1
    assert all(len(r["fold_results"]) == 2 and r["extra_tests"] for r in runs.values())


def test_a_malformed_variant_is_a_one_line_error(tmp_path):
    proc = run_script("experiments/compare_recipes.py", "--out", tmp_path, "--variants", "mixup", check=False)
    assert proc.returncode == 2 and not any(tmp_path.iterdir())
    assert proc.stderr.strip().splitlines()[-1] == ("compare_recipes.py: error: --variants 'mixup': write NAME=FLAGS "
                                                    "with a new name, e.g. 'mixup=--mixup 0.2'")


def test_a_section_of_its_own_is_appended_and_then_replaced(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "experiments"))
    from compare_recipes import write_table

    markdown = tmp_path / "RESULTS.md"
    markdown.write_text("# kept\n\n<!-- compare_recipes.py: table -->\nA\n<!-- /table -->\n")
    write_table(str(markdown), "B\n", "features")
    write_table(str(markdown), "C\n", "features")
    assert markdown.read_text() == ("# kept\n\n<!-- compare_recipes.py: table -->\nA\n<!-- /table -->\n\n"
                                    "<!-- compare_recipes.py: features -->\nC\n<!-- /features -->\n")


def vector_corpus(folder, speakers: range, shift: float = 0.0, seed: int = 0):
    """Stage-2-like eGeMAPS vectors of a 2-class problem (10 clips a speaker): one .npy per clip and
    sex_train/val/test.csv; `shift` moves every value (another kind of voice)."""
    import numpy as np
    import pandas as pd

    from toolkit.features.egemaps import Egemaps

    rng = np.random.default_rng(seed)
    (folder / "egemaps").mkdir(parents=True)
    rows = []
    for s in speakers:
        sex = ["Female", "Male"][s % 2]
        for i in range(10):
            values = rng.normal(0, 1, 8) + (1.5 if sex == "Male" else -1.5) * np.eye(8)[0] + shift
            name = f"{s}_{i}"
            Egemaps().storage.save(values.astype(np.float32), str(folder / "egemaps" / f"{name}.npy"))
            rows.append({"sex": sex, "Audio_file_name": name, "Audio_file_path": f"{name}.wav", "ActorID": s,
                         "egemaps_file_path": f"egemaps/{name}.npy"})
    table = pd.DataFrame(rows)
    parts = {"train": table["ActorID"] % 5 < 3, "val": table["ActorID"] % 5 == 3, "test": table["ActorID"] % 5 == 4}
    for split, keep in parts.items():
        table[keep].to_csv(folder / f"sex_{split}.csv", index=False)


def wide_and_training_corpora(tmp_path):
    """tmp_path/train (20 speakers) and a shifted 'wide' corpus of 6 with voice families; its stage-2 folder."""
    vector_corpus(tmp_path / "train", range(1000, 1020))
    vector_corpus(tmp_path / "wide" / "egemaps_folder", range(7001, 7007), shift=0.5, seed=1)
    (tmp_path / "wide" / "voice_families.csv").write_text(
        "ActorID,Sex,families\n7001,Male,breathy\n7002,Female,breathy+reverb\n7003,Male,reverb\n7004,Female,creaky\n"
        "7005,Male,creaky\n7006,Female,reverb\n")
    return tmp_path / "wide" / "egemaps_folder"


def test_compare_heads_scores_every_fold_model_on_an_extra_corpus_per_voice_family(tmp_path, stages_in_process):
    import compare_heads

    wide_and_training_corpora(tmp_path)
    compare_heads.main(["--data", str(tmp_path / "train"), "--out", str(tmp_path / "out"), "--categories", "sex",
                        "--normalize", "none", "--models", "linear", "--recipes", "vector", "--folds", "2",
                        "--extra", f"wide={tmp_path / 'wide' / 'egemaps_folder'}"])
    rows = json.loads((tmp_path / "out" / "compare_heads.json").read_text())
    assert {r["name"] for r in rows} >= {"toolkit linear, --recipe vector (full-batch L-BFGS)", "sklearn LR C=1, train+val"}
    for r in rows:  # every fold model scored every extra speaker
        wide = r["extra"]["wide"]
        assert len(wide["f1_folds"]) == 2 and sorted(wide["per_speaker"]) == [str(s) for s in range(7001, 7007)]
        assert wide["worst_accuracy"] == min(wide["per_speaker"].values()) and wide["f1_mean"] > 0.6
    text = (tmp_path / "out" / "compare_heads.md").read_text()
    assert "wide: F1 | wide: worst speaker (acc.) |" in text
    assert "| category | normalize | head | breathy | creaky | reverb |" in text  # the families, one column each
    cv = json.loads((tmp_path / "out" / "sex_none" / "vector" / "linear_sex_cv.json").read_text())
    assert all(len(f["extra_tests"]) == 1 for f in cv["fold_results"])  # train_cnn.py --extra_test_csv got the corpus

    proc = run_script("experiments/compare_heads.py", "--data", tmp_path / "train", "--out", tmp_path / "x",
                      "--extra", "wide", check=False)
    assert proc.returncode == 2 and "--extra wide: give NAME=FOLDER" in proc.stderr.strip().splitlines()[-1]


def test_scikit_learn_baselines_train_on_copies_and_test_originals_only():
    import sys

    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(ROOT / "experiments"))
    from compare_heads import sklearn_folds, summarise, over_seeds

    rng = np.random.default_rng(0)
    speakers = [str(s) for s in range(1000, 1012) for _ in range(6)]
    y = np.array([int(s) % 2 for s in speakers])
    x = rng.normal(0, 1, (len(y), 3)) + 2.0 * y[:, None]
    frame = pd.DataFrame({"ActorID": speakers, "source_clip": ""})
    # copies of every clip whose label flips the feature: a model trained on them learns the opposite
    frame = pd.concat([frame, frame.assign(source_clip="orig")], ignore_index=True)
    x, y = np.vstack([x, -x]), np.concatenate([y, y])
    cv = {"fold_results": [{"test_speakers": ["1000", "1001", "1002", "1003"], "val_speakers": ["1004", "1005"]},
                           {"test_speakers": ["1004", "1005", "1006", "1007"], "val_speakers": ["1008", "1009"]}]}
    out = sklearn_folds(x, y, frame, ["Male", "Female"], cv, [1.0], None)
    result = out["sklearn LR C=1"]
    tested = result["pred"] >= 0
    assert not (tested & (frame["source_clip"] != "").to_numpy()).any()  # no copy is ever tested
    assert tested.sum() == 8 * 6  # every original clip of the test speakers
    # trained on originals and their sign-flipped copies: no better than chance, where originals alone give ~1.0
    assert np.mean([f["accuracy"] for f in result["folds"]]) < 0.8
    row = summarise("x", result, frame, y, ["Male", "Female"])
    assert row["worst_speaker"] in {s for f in cv["fold_results"] for s in f["test_speakers"]}
    seeds = over_seeds({1: [{"category": "sex", "normalize": "none", **row}],
                        2: [{"category": "sex", "normalize": "none", **{**row, "f1_mean": row["f1_mean"] + 0.1}}]}, [])
    assert seeds[0]["f1_mean"] == pytest.approx(row["f1_mean"] + 0.05) and seeds[0]["f1_std"] == pytest.approx(0.0707, abs=1e-3)


def test_cv_table_puts_a_models_fold_runs_beside_compare_heads_on_the_same_folds(tmp_path, stages_in_process):
    import compare_heads
    import cv_table

    wide = wide_and_training_corpora(tmp_path)
    compare_heads.main(["--data", str(tmp_path / "train"), "--out", str(tmp_path / "heads"), "--categories", "sex",
                        "--normalize", "none", "--models", "linear", "--recipes", "vector", "--folds", "2",
                        "--extra", f"wide={wide}"])
    for seed in (42, 43):  # another model, run as a user runs it, scored on the extra corpus's three split CSVs
        run_script("train_cnn.py", "--csv_load_path", tmp_path / "train", "--category", "sex", "--model", "mlp",
                   "--recipe", "default", "--epochs", "2", "--folds", "2", "--seed", str(seed), "--threads", "1",
                   "--model_save_path", tmp_path / f"mlp_{seed}", "--extra_test_csv",
                   *(wide / f"sex_{part}.csv" for part in ("train", "val", "test")), in_process=True)

    cv_table.main(["--runs", str(tmp_path / "mlp_42"), "--model", "mlp", "--category", "sex", "--extra", f"wide={wide}",
                   "--beside", f"egemaps={tmp_path / 'heads'}", "--out", str(tmp_path / "table")])
    rows = {r["name"]: r for r in json.loads((tmp_path / "table" / "cv_table.json").read_text())}
    assert "egemaps: sklearn LR C=1, train+val" in rows and "toolkit mlp" in rows
    scored = rows["toolkit mlp"]["extra"]["wide"]
    assert sorted(scored["per_speaker"]) == [str(s) for s in range(7001, 7007)]  # the three CSVs pooled
    assert scored["f1_mean"] > 0.6 and scored["worst_accuracy"] == min(scored["per_speaker"].values())
    text = (tmp_path / "table" / "cv_table.md").read_text()
    assert "| category | normalize | head | breathy | creaky | reverb |" in text

    # more rows: a fusion of two runs of the seed (fuse_folds.py) beside one of its members, named by default
    run_script("experiments/fuse_folds.py", "--run", tmp_path / "mlp_42" / "mlp_sex_cv.json",
               tmp_path / "heads" / "sex_none" / "vector" / "linear_sex_cv.json", "--out", tmp_path / "fused",
               "--extra", f"wide={wide},{wide}")
    cv_table.main(["--runs", str(tmp_path / "mlp_42"), "--runs", str(tmp_path / "fused"), "--category", "sex",
                   "--extra", f"wide={wide}", "--out", str(tmp_path / "table2")])
    rows = {r["name"]: r for r in json.loads((tmp_path / "table2" / "cv_table.json").read_text())}
    assert sorted(rows) == ["fused mlp + linear", "toolkit mlp"]
    fused = json.loads((tmp_path / "fused" / "fused.json").read_text())
    assert rows["fused mlp + linear"]["extra"]["wide"]["f1_mean"] == pytest.approx(
        np.mean([f["f1"] for f in fused["extra"]["wide"]]))
    assert rows["fused mlp + linear"]["normalize"] == "none" and rows["toolkit mlp"]["f1_mean"] > 0.6

    proc = run_script("experiments/cv_table.py", "--runs", tmp_path / "mlp_43", "--model", "mlp", "--category", "sex",
                      "--beside", f"egemaps={tmp_path / 'heads'}", check=False)  # seed 43: other folds than compare_heads'
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'heads' / 'sex_none' / 'vector' / 'linear_sex_cv.json'}: other folds than the runs' of seed 43; "
        f"compare on the same folds")
