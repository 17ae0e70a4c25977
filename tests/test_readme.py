"""The README's walkthrough runs exactly as written after `make demo`: scripts/demo.sh runs (small) in a copy of the
repository, then every block marked `<!-- walkthrough -->` runs in one shell, in order, as a newcomer would."""
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

MARK = "<!-- walkthrough -->"
LOCAL = {"Data", "Models", "runs", ".venv", ".git"}  # what `make demo` makes or a clone keeps to itself


def walkthrough_blocks(readme: str) -> list[str]:
    return re.findall(re.escape(MARK) + r"\n```bash\n(.*?)```", readme, flags=re.S)


def clone_of_the_repository(folder: Path) -> Path:
    """The repository's files seen from `folder` (links, not copies), with this Python's venv as .venv."""
    for entry in ROOT.iterdir():
        if entry.name not in LOCAL:
            (folder / entry.name).symlink_to(entry)
    (folder / "Data").mkdir()
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def test_every_marked_block_is_a_bash_block_and_the_readme_is_short():
    readme = (ROOT / "README.md").read_text()
    assert readme.count(MARK) == len(walkthrough_blocks(readme)) >= 4
    assert len(readme.splitlines()) <= 150


def test_the_walkthrough_runs_as_written_after_make_demo(tmp_path):
    repo = clone_of_the_repository(tmp_path)
    clips = 6  # per actor, one per emotion: every stage, model and split as with more, on the fewest clips
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DEMO_FLAGS": f"--actors 8 --clips_per_actor {clips}", "EPOCHS": "1",
           "AE_EPOCHS": "1", "AE_CLASSIFIER_EPOCHS": "1", "PL_EPOCHS": "1", "ENCODERS": "0"}
    demo = subprocess.run(["bash", "scripts/demo.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    summary = demo.stdout[demo.stdout.index("== summary"):]
    assert "| sex | cnn3 | mel | none |" in summary and "| sex | cnn3 | mel | autoencoder |" in summary
    assert "Web demo:  .venv/bin/python app.py --model_dir Models/demo" in summary
    # stage 4 ran alongside stages 3 and 5: its output is shown after theirs, and kept in a log
    assert demo.stdout.index("== stage 5:") < demo.stdout.index("== stage 4a:") < demo.stdout.index("== summary")
    assert "OK: the saved autoencoder reloads" in (repo / "Models/demo/logs/stage_4.log").read_text()

    again = subprocess.run(["bash", "scripts/demo.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    for card in ("cnn3_sex", "cnn3_sex_PL", "autoencoder_3_layers", "cnn3_ae_sex"):  # a second run trains nothing again
        assert f"done before: Models/demo/{card}.json is a finished run" in again.stdout
    assert not re.search(r"training \w+: ", again.stdout + again.stderr)  # no training progress bar

    script = "\n".join(walkthrough_blocks((ROOT / "README.md").read_text()))
    walk = subprocess.run(["bash", "-e", "-c", script], cwd=repo, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                          capture_output=True, text=True, timeout=600)
    assert walk.returncode == 0, walk.stdout[-3000:] + walk.stderr[-3000:]
    assert "usage: predict.py" in walk.stdout
    assert (repo / "Models/demo/unlabeled_predictions.csv").read_text().count("\n") == 1 + 4 * clips  # 4 unlabeled actors
    assert (repo / "Models/demo/cnn3_emotion.pt").is_file() and (repo / "Models/mine/mlp_emotion.json").is_file()
    own = (repo / "Models/mine/predictions.csv").read_text().splitlines()
    assert own[0].startswith("file,") and "p_angry" in own[0] and len(own) == 1 + 4 * clips


def test_what_the_readme_writes_stays_out_of_git():
    readme = (ROOT / "README.md").read_text()
    folders = sorted(set(re.findall(r"\b((?:Data|Models)/[A-Za-z_]+)/", readme)))
    assert "Data/mine" in folders
    ignored = subprocess.run(["git", "check-ignore", *(f + "/x" for f in folders)], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert ignored == [f + "/x" for f in folders]


def test_predict_and_the_web_demo_look_for_models_in_the_same_folder_by_default():
    import app
    import predict

    assert app.get_args_parser().get_default("model_dir") == predict.get_args_parser().get_default("model_dir") == "Models/"


def test_help_states_each_default_once_and_offers_only_what_the_script_takes():
    import pseudo_labeling_semisupervised
    import train_cnn

    texts = {}
    for module in (pseudo_labeling_semisupervised, train_cnn):
        proc = subprocess.run([sys.executable, str(ROOT / f"{module.__name__}.py"), "--help"], cwd=ROOT,
                              capture_output=True, text=True, check=True)
        texts[module.__name__] = " ".join(proc.stdout.split())
    assert not re.search(r"\(default: [^)]*\) \(default:", texts["pseudo_labeling_semisupervised"])
    assert "(10%) (default: 0%)" in texts["pseudo_labeling_semisupervised"]
    model_help = texts["train_cnn"].rsplit("--model MODEL", 1)[1].split(" --", 1)[0]
    assert "wav2vec2: train_wav2vec2.py" in model_help and "wav2vec2," not in model_help


def test_a_stage_without_frames_does_not_point_to_it():
    from train_autoencoder import RECIPE
    from toolkit.cli import Parser
    from toolkit.config import add_recipe_flags

    p = Parser()
    add_recipe_flags(p, names=("weight_decay", "time_axis"), base=RECIPE)
    text = " ".join(p.format_help().split())
    assert "--frames" not in text and "pads/crops to 128 frames" in text
