"""experiments/compare_recipes.py end to end at toy size: corpora, both image kinds, CV per recipe, variant and seed."""
from __future__ import annotations

import json

from conftest import ROOT, run_script


def test_compare_recipes_runs_every_configuration_on_the_same_folds(tmp_path):
    markdown = tmp_path / "RESULTS.md"
    markdown.write_text("# notes kept\n\n<!-- compare_recipes.py: table -->\nold table\n<!-- /table -->\n\nanalysis kept\n")
    run_script("experiments/compare_recipes.py", "--out", tmp_path / "cmp", "--actors", "6", "--clips_per_actor", "6",
               "--unseen_actors", "4", "--categories", "sex", "--folds", "2", "--epochs", "1", "--seeds", "1", "2",
               "--workers", "1", "--variants", "nogain=--gain_db 0", "--markdown", markdown)
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
