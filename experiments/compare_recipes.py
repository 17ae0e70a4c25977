"""The seed-compatible recipe and the new defaults side by side, on the same speaker-grouped folds of the demo corpus.

Builds the demo corpus (plus a held-out corpus of unseen kinds of voices), runs stages 1-2 once per dB reference
(the seed recipe reads per-clip-max images, the default one fixed-reference images), then `train_cnn.py --folds K`
for every category × model × recipe, each fold model also scored on the unseen voices, and writes a markdown table.
Every step is the command a user would type (printed as it runs); finished steps are skipped on a re-run.

    python3 experiments/compare_recipes.py                       # cnn3, sex + emotion, 5 folds, 30 epochs (2 cores: ~20 min)
    python3 experiments/compare_recipes.py --models cnn3 resnet18 --folds 3 --epochs 10
    python3 experiments/compare_recipes.py --seeds 42 43 44 --variants "mixup=--mixup 0.2" "nofreq=--freq_masks 0"

A variant is the default recipe with extra train_cnn.py flags (on the default's images); with several seeds the
first seed's runs fill the main table and a second table gives every configuration's mean over the seeds.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from toolkit.fileio import atomic_path, read_json, write_csv  # noqa: E402

DB_REF = {"seed": "max", "default": "fixed"}  # which stage-2 images each recipe trains on
METRICS = ("accuracy", "f1", "uar")


def run(*cmd: str, log: str | None = None) -> None:
    """Run one stage as a subprocess; its output goes to `log` (or the terminal); a failure stops the comparison."""
    cmd = [sys.executable, *map(str, cmd)]
    print("$", " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) and c.startswith(ROOT) else c for c in cmd), flush=True)
    with open(log, "w") if log else open(os.devnull, "w") as out:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode:
        sys.exit(f"error: {' '.join(cmd)} exited {proc.returncode}" + (f"; see {log}" if log else ""))


def prepare(corpus: str, categories: list[str], workers: int) -> None:
    """Stages 1-2 for every category and dB reference; CSVs go to {corpus}/{db_ref}/."""
    for category in categories:
        run("data_preprocessing.py", "--csv_file", "VideoDemographics.csv", "--csv_path", corpus + "/",
            "--audio_path", os.path.join(corpus, "AudioWAV") + "/", "--category", category)
        for db_ref in DB_REF.values():
            out = os.path.join(corpus, db_ref)
            os.makedirs(out, exist_ok=True)
            run("generate_mel_spectrograms.py", "--load_csv_path", corpus + "/", "--save_spec_path", corpus + "/",
                "--save_csv_path", out + "/", "--category", category, "--db_ref", db_ref, "--workers", str(workers))
            # The unseen-voice corpus is only ever a test set: one CSV with all of its clips.
            parts = [pd.read_csv(os.path.join(out, f"{category}_{s}.csv")) for s in ("train", "val", "test")]
            write_csv(pd.concat(parts, ignore_index=True), os.path.join(out, f"{category}_all.csv"))


def fmt(m: dict) -> str:
    return f"{m['mean']:.3f} ± {m['std']:.3f}"


def table(results: list[dict]) -> str:
    lines = ["| category | model | recipe | accuracy | weighted F1 | UAR | worst speaker (acc.) | unseen voices F1 | minutes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cv, w = r["cv"], r["cv"]["pooled_test"]["worst_speaker"]
        unseen = next(iter(cv["extra_tests"].values()), None)
        lines.append(f"| {r['category']} | {r['model']} | {r['recipe']} | {fmt(cv['test']['accuracy'])} | "
                     f"{fmt(cv['test']['f1'])} | {fmt(cv['test']['uar'])} | {w['speaker']} ({w['accuracy']:.2f}) | "
                     f"{fmt(unseen['f1']) if unseen else '-'} | {r['minutes']:.1f} |")
    return "\n".join(lines)


def seed_table(results: list[dict]) -> str:
    """Per configuration, over seeds: the mean of the fold-mean F1, its spread, and the mean fold-to-fold std."""
    lines = ["| category | model | recipe | weighted F1: mean of seeds (± std of seed means) | fold std of F1: mean "
             "(per seed) | unseen voices F1 (± std of seed means) |", "|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["category"], r["model"], r["recipe"]), []).append(r)
    for (category, model, recipe), runs in groups.items():
        means = [r["cv"]["test"]["f1"]["mean"] for r in runs]
        stds = [r["cv"]["test"]["f1"]["std"] for r in runs]
        unseen = [next(iter(r["cv"]["extra_tests"].values()))["f1"]["mean"] for r in runs if r["cv"]["extra_tests"]]
        lines.append(f"| {category} | {model} | {recipe} | {np.mean(means):.3f} (± {np.std(means, ddof=1):.3f}) | "
                     f"{np.mean(stds):.3f} ({' '.join(f'{x:.3f}' for x in stds)}) | "
                     f"{np.mean(unseen):.3f} (± {np.std(unseen, ddof=1):.3f}) |")
    return "\n".join(lines)


START, END = "<!-- compare_recipes.py: table -->", "<!-- /table -->"


def write_table(path: str, text: str) -> None:
    """Put the table between the markers of an existing write-up (the analysis around it stays), else a new file."""
    old = open(path).read() if os.path.isfile(path) else ""
    if START in old and END in old:
        new = old[: old.index(START) + len(START)] + "\n" + text + old[old.index(END):]
    else:
        new = f"# Seed recipe vs new defaults\n\n{START}\n{text}{END}\n"
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(new)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="Data/compare", help="corpora, images, models and logs")
    p.add_argument("--actors", type=int, default=91, help="demo corpus speakers (CREMA-D has 91)")
    p.add_argument("--clips_per_actor", type=int, default=24)
    p.add_argument("--unseen_actors", type=int, default=20, help="speakers of the unseen-voice test corpus")
    p.add_argument("--categories", nargs="+", default=["sex", "emotion"])
    p.add_argument("--models", nargs="+", default=["cnn3"])
    p.add_argument("--recipes", nargs="+", default=["seed", "default"], choices=list(DB_REF))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=30, help="per fold (the seed trained 30)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42], help="one full comparison per seed")
    p.add_argument("--variants", nargs="*", default=[], metavar="NAME=FLAGS",
                   help="extra configurations: the default recipe plus these train_cnn.py flags, e.g. 'mixup=--mixup 0.2'")
    p.add_argument("--jobs", type=int, default=2, help="training runs at once (each with --threads 1)")
    p.add_argument("--workers", type=int, default=2, help="processes for corpus and spectrogram generation")
    p.add_argument("--markdown", default=os.path.join(ROOT, "experiments", "RESULTS.md"),
                   help="the table goes between the markers of this file (created if missing)")
    args = p.parse_args()
    for v in args.variants:
        name = v.split("=", 1)[0]
        if "=" not in v or not name.isidentifier() or name in DB_REF:
            p.error(f"--variants {v!r}: write NAME=FLAGS with a new name, e.g. 'mixup=--mixup 0.2'")

    out = os.path.abspath(args.out)
    standard, unseen = os.path.join(out, "demo"), os.path.join(out, "unseen")
    run("make_demo_data.py", "--out", standard, "--actors", str(args.actors), "--clips_per_actor", str(args.clips_per_actor),
        "--seed", "0", "--workers", str(args.workers), "--quiet")
    run("make_demo_data.py", "--out", unseen, "--actors", str(args.unseen_actors), "--clips_per_actor", str(args.clips_per_actor),
        "--seed", "1", "--workers", str(args.workers), "--voices", "unseen", "--quiet")
    for corpus in (standard, unseen):
        prepare(corpus, args.categories, args.workers)

    variants = dict(v.split("=", 1) for v in args.variants)
    configs = {r: [] for r in args.recipes} | {name: flags.split() for name, flags in variants.items()}
    jobs = [(c, m, r, seed) for seed in args.seeds for c in args.categories for m in args.models for r in configs]

    def train(job: tuple[str, str, str, int]) -> dict:
        category, model, config, seed = job
        recipe = config if config in DB_REF else "default"
        models = os.path.join(out, "models", config if seed == args.seeds[0] else f"{config}_seed{seed}")
        summary = os.path.join(models, f"{model}_{category}_cv.json")
        if not os.path.isfile(summary):
            os.makedirs(models, exist_ok=True)
            run("train_cnn.py", "--csv_load_path", os.path.join(standard, DB_REF[recipe]) + "/", "--category", category,
                "--model", model, "--no-pretrained", "--recipe", recipe, "--folds", str(args.folds),
                "--epochs", str(args.epochs), "--seed", str(seed), "--threads", "1", "--model_save_path", models + "/",
                "--extra_test_csv", os.path.join(unseen, DB_REF[recipe], f"{category}_all.csv"), *configs[config],
                log=os.path.join(models, f"{model}_{category}_cv.log"))
        cv = read_json(summary)
        return {"category": category, "model": model, "recipe": config, "seed": seed, "cv": cv,
                "minutes": sum(f["seconds"] for f in cv["fold_results"]) / 60}

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(train, jobs))

    # Both recipes must have been tested on exactly the same speakers in every fold, or the comparison is void.
    for c in args.categories:
        for seed in args.seeds:
            folds = {tuple(tuple(f["test_speakers"]) for f in r["cv"]["fold_results"])
                     for r in results if r["category"] == c and r["seed"] == seed}
            assert len(folds) == 1, f"{c}, seed {seed}: recipes were scored on different folds"

    first = [r for r in results if r["seed"] == args.seeds[0]]
    text = (f"Demo corpus: {args.actors} speakers × {args.clips_per_actor} clips; unseen voices: {args.unseen_actors} "
            f"speakers × {args.clips_per_actor} clips (`--voices unseen`). {args.folds}-fold speaker-grouped CV, "
            f"{args.epochs} epochs, seed {args.seeds[0]}; mean ± std over folds (ddof 1). Worst speaker: lowest accuracy "
            f"over all folds (each speaker is tested once). Minutes: training time summed over folds.\n\n{table(first)}\n")
    if len(args.seeds) > 1:
        text += f"\nOver seeds {' '.join(map(str, args.seeds))} (each a new fold assignment and initialisation):\n\n{seed_table(results)}\n"
    write_table(args.markdown, text + f"\nCommand: `python3 experiments/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}`\n")
    print(text)
    print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
