"""The seed-compatible recipe, the new defaults and other features side by side, on the same speaker-grouped folds.

Builds the demo corpus (plus a held-out corpus of unseen kinds of voices), runs stages 1-2 once per kind of feature
(the seed recipe reads per-clip-max images, the default one fixed-reference images; eGeMAPS vectors for the vector
models), then `train_cnn.py --folds K` for every category × model × configuration, each fold model also scored on
the unseen voices, and writes a markdown table. Every step is the command a user would type (printed as it runs);
finished steps are skipped on a re-run.

    python3 experiments/compare_recipes.py                       # cnn3, sex + emotion, 5 folds, 30 epochs (2 cores: ~20 min)
    python3 experiments/compare_recipes.py --models cnn3 resnet18 --folds 3 --epochs 10
    python3 experiments/compare_recipes.py --seeds 42 43 44 --variants "mixup=--mixup 0.2" "nofreq=--freq_masks 0"
    python3 experiments/compare_recipes.py --recipes default --vector_models mlp --variants "spknorm=--normalize speaker" \
        --section features                                     # cnn3 and eGeMAPS + mlp, with speaker normalisation

A variant is the default recipe with extra train_cnn.py flags (on the default's images, and on eGeMAPS for the
vector models); with several seeds the first seed's runs fill the main table and a second table gives every
configuration's mean over the seeds. --section names the markers the table goes between, so several experiments
can share one write-up.
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
VECTORS = "egemaps"  # the stage-2 features of the vector models (their CSVs go to {corpus}/egemaps/)


def run(*cmd: str, log: str | None = None) -> None:
    """Run one stage as a subprocess; its output goes to `log` (or the terminal); a failure stops the comparison."""
    cmd = [sys.executable, *map(str, cmd)]
    print("$", " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) and c.startswith(ROOT) else c for c in cmd), flush=True)
    with open(log, "w") if log else open(os.devnull, "w") as out:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode:
        sys.exit(f"error: {' '.join(cmd)} exited {proc.returncode}" + (f"; see {log}" if log else ""))


def prepare(corpus: str, categories: list[str], workers: int, vectors: bool) -> None:
    """Stages 1-2 for every category: images per dB reference in {corpus}/{db_ref}/, eGeMAPS in {corpus}/egemaps/."""
    features = {db_ref: ["--db_ref", db_ref] for db_ref in DB_REF.values()}
    if vectors:
        features[VECTORS] = ["--features", VECTORS]
    for category in categories:
        run("data_preprocessing.py", "--csv_file", "VideoDemographics.csv", "--csv_path", corpus + "/",
            "--audio_path", os.path.join(corpus, "AudioWAV") + "/", "--category", category)
        for folder, flags in features.items():
            out = os.path.join(corpus, folder)
            os.makedirs(out, exist_ok=True)
            run("generate_mel_spectrograms.py", "--load_csv_path", corpus + "/", "--save_spec_path", corpus + "/",
                "--save_csv_path", out + "/", "--category", category, *flags, "--workers", str(workers))
            # The unseen-voice corpus is only ever a test set: one CSV with all of its clips.
            parts = [pd.read_csv(os.path.join(out, f"{category}_{s}.csv")) for s in ("train", "val", "test")]
            write_csv(pd.concat(parts, ignore_index=True), os.path.join(out, f"{category}_all.csv"))


def fmt(m: dict) -> str:
    return f"{m['mean']:.3f} ± {m['std']:.3f}"


def table(results: list[dict]) -> str:
    lines = ["| category | model | features | recipe | accuracy | weighted F1 | UAR | worst speaker (acc.) | "
             "unseen voices F1 | minutes |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cv, w = r["cv"], r["cv"]["pooled_test"]["worst_speaker"]
        unseen = next(iter(cv["extra_tests"].values()), None)
        lines.append(f"| {r['category']} | {r['model']} | {r['features']} | {r['recipe']} | {fmt(cv['test']['accuracy'])} | "
                     f"{fmt(cv['test']['f1'])} | {fmt(cv['test']['uar'])} | {w['speaker']} ({w['accuracy']:.2f}) | "
                     f"{fmt(unseen['f1']) if unseen else '-'} | {r['minutes']:.1f} |")
    return "\n".join(lines)


def seed_table(results: list[dict]) -> str:
    """Per configuration, over seeds: the mean of the fold-mean F1, its spread, and the mean fold-to-fold std."""
    lines = ["| category | model | features | recipe | weighted F1: mean of seeds (± std of seed means) | fold std of "
             "F1: mean (per seed) | unseen voices F1 (± std of seed means) |", "|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["category"], r["model"], r["features"], r["recipe"]), []).append(r)
    for (category, model, features, recipe), runs in groups.items():
        means = [r["cv"]["test"]["f1"]["mean"] for r in runs]
        stds = [r["cv"]["test"]["f1"]["std"] for r in runs]
        unseen = [next(iter(r["cv"]["extra_tests"].values()))["f1"]["mean"] for r in runs if r["cv"]["extra_tests"]]
        lines.append(f"| {category} | {model} | {features} | {recipe} | {np.mean(means):.3f} (± {np.std(means, ddof=1):.3f}) | "
                     f"{np.mean(stds):.3f} ({' '.join(f'{x:.3f}' for x in stds)}) | "
                     f"{np.mean(unseen):.3f} (± {np.std(unseen, ddof=1):.3f}) |")
    return "\n".join(lines)


def write_table(path: str, text: str, section: str = "table", tool: str = "compare_recipes.py") -> None:
    """Put the table between the section's markers (named after `tool`) of an existing write-up (the analysis around
    it stays); a section the file lacks is appended, a missing file is created."""
    start, end = f"<!-- {tool}: {section} -->", f"<!-- /{section} -->"
    old = open(path).read() if os.path.isfile(path) else ""
    if start in old and end in old:
        new = old[: old.index(start) + len(start)] + "\n" + text + old[old.index(end):]
    else:
        new = (old.rstrip() + "\n\n" if old else "# Recipe and feature comparisons\n\n") + f"{start}\n{text}{end}\n"
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(new)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="Data/compare", help="corpora, images, models and logs")
    p.add_argument("--actors", type=int, default=91, help="demo corpus speakers (CREMA-D has 91)")
    p.add_argument("--clips_per_actor", type=int, default=24)
    p.add_argument("--unseen_actors", type=int, default=20, help="speakers of the unseen-voice test corpus")
    p.add_argument("--categories", nargs="+", default=["sex", "emotion"])
    p.add_argument("--models", nargs="+", default=["cnn3"], help="image models (on mel spectrograms)")
    p.add_argument("--vector_models", nargs="*", default=[], help="vector models on eGeMAPS, e.g. mlp linear")
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
    p.add_argument("--section", default="table", help="the markers' name: <!-- compare_recipes.py: SECTION -->")
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
        prepare(corpus, args.categories, args.workers, vectors=bool(args.vector_models))

    variants = {name: flags.split() for name, flags in (v.split("=", 1) for v in args.variants)}
    image_configs = {r: [] for r in args.recipes} | variants
    vector_configs = {"default": []} | variants  # each vector head's own default recipe (the seed had no vector features)
    jobs = [(c, m, r, seed) for seed in args.seeds for c in args.categories
            for models, configs in ((args.models, image_configs), (args.vector_models, vector_configs))
            for m in models for r in configs]

    def train(job: tuple[str, str, str, int]) -> dict:
        category, model, config, seed = job
        recipe = config if config in DB_REF else "default"
        vector = model in args.vector_models
        data = VECTORS if vector else DB_REF[recipe]
        name = f"{VECTORS}_{config}" if vector else config
        models = os.path.join(out, "models", name if seed == args.seeds[0] else f"{name}_seed{seed}")
        summary = os.path.join(models, f"{model}_{category}_cv.json")
        if not os.path.isfile(summary):
            os.makedirs(models, exist_ok=True)
            run("train_cnn.py", "--csv_load_path", os.path.join(standard, data) + "/", "--category", category,
                "--model", model, "--no-pretrained", *([] if vector else ["--recipe", recipe]), "--folds", str(args.folds),
                "--epochs", str(args.epochs), "--seed", str(seed), "--threads", "1", "--model_save_path", models + "/",
                "--extra_test_csv", os.path.join(unseen, data, f"{category}_all.csv"), *(variants.get(config) or []),
                log=os.path.join(models, f"{model}_{category}_cv.log"))
        cv = read_json(summary)
        return {"category": category, "model": model, "features": VECTORS if vector else "mel", "recipe": config,
                "seed": seed, "cv": cv, "minutes": sum(f["seconds"] for f in cv["fold_results"]) / 60}

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
    write_table(args.markdown, text + f"\nCommand: `python3 experiments/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}`\n", args.section)
    print(text)
    print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
