"""The toolkit's vector heads beside scikit-learn's logistic regression, on exactly the same speaker folds.

For each category, with and without speaker normalisation, on a stage-2 vector feature folder (eGeMAPS, ComParE,
ssl: the folder holding {category}_train/val/test.csv):
  1. `train_cnn.py --folds K` for every model × recipe asked for (default: linear and mlp with their own `vector`
     recipe, and with the AdamW `default` recipe they had before), as a user types it;
  2. scikit-learn on the folds those runs wrote ({model}_{category}_cv.json: every fold's test and validation
     speakers; the rest trained), on the same feature values (the toolkit's loader, speaker normalisation included):
     StandardScaler + LogisticRegression(C=1) fitted on the training speakers, the same with C chosen on the
     validation speakers (lowest validation log loss over the `vector` recipe's C values, balanced class weights as
     that recipe's), and LogisticRegression(C=1) fitted on training + validation speakers (the plain 10-line
     baseline: it sees more speakers than any model that keeps some back for validation);
  3. a markdown table: weighted F1 mean ± std over folds (ddof 1), accuracy, the worst speaker (lowest accuracy,
     each speaker tested once) and the C chosen per fold; printed, written to {out}/compare_heads.md and .json, and,
     with --markdown, put between the `<!-- compare_heads.py: SECTION -->` markers of that file.

--extra NAME=FOLDER scores every fold model, the toolkit's and scikit-learn's, on another corpus's features too (e.g.
voices never heard: `make_demo_data.py --voices wide`, stages 1-2 with the same feature type): weighted F1 mean ± std
over the fold models and the worst speaker of that corpus (its accuracy averaged over the fold models). Where the
corpus has a voice_families.csv (--voices wide), a second table gives each family's mean speaker accuracy.

    python3 experiments/compare_heads.py --data Data/demo91/egemaps --out Models/heads --categories sex emotion
    python3 experiments/compare_heads.py --data Data/demo91/egemaps --out Models/heads --extra wide=Data/wide/egemaps \\
        --models linear mlp --recipes vector --markdown experiments/RESULTS.md --section heads_wide

Finished runs (their _cv.json exists) are not trained again, so a re-run only adds what is missing; --table_only
trains nothing and tabulates what has finished.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from compare_recipes import run, write_table  # noqa: E402
from toolkit.config import RECIPES  # noqa: E402
from toolkit.evaluation.metrics import breakdown, classification_metrics  # noqa: E402
from toolkit.fileio import atomic_path, read_json, write_csv, write_json  # noqa: E402
from toolkit.io.splits import is_copy  # noqa: E402
from toolkit.training.data import load_split  # noqa: E402

NORMALIZE = ("none", "speaker")


def features(data: str, category: str, normalize: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, list[str]]:
    """(values, labels, rows, classes) of all three split CSVs pooled, as train_cnn.py --folds reads them."""
    csvs = [os.path.join(data, f"{category}_{s}.csv") for s in ("train", "val", "test")]
    split = load_split(csvs, category, RECIPES["default"], normalize=normalize, desc="all splits")
    x = split.x[torch.arange(len(split))] if not isinstance(split.x, torch.Tensor) else split.x
    return x.double().flatten(1).numpy(), split.labels.numpy(), split.frame, split.classes


def sklearn_folds(x: np.ndarray, y: np.ndarray, frame: pd.DataFrame, classes: list[str], cv: dict, c_values: list[float],
                  class_weight: str | None, extras: dict[str, tuple] | None = None) -> dict[str, dict]:
    """Per baseline: per-fold metrics, pooled test predictions and chosen C, on the folds of a toolkit _cv.json; and
    per fold, each extra corpus's metrics and per-speaker accuracy (extras: name -> (values, labels, rows))."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    speakers = frame["ActorID"].astype(str).to_numpy()
    copies = is_copy(frame).to_numpy()  # augmented copies (fold_copies.py) train with their speaker, never val or test
    extras = extras or {}
    out = {name: {"folds": [], "pred": np.full(len(y), -1), "C": [], "extra": {e: [] for e in extras}} for name in
           ("sklearn LR C=1", "sklearn LR, C on validation", "sklearn LR C=1, train+val")}
    for fold in cv["fold_results"]:
        test, val = np.isin(speakers, fold["test_speakers"]), np.isin(speakers, fold["val_speakers"])
        train = ~test & ~val
        test, val = test & ~copies, val & ~copies

        def fit(rows, c, weight=None):
            scaler = StandardScaler().fit(x[rows])
            model = LogisticRegression(C=c, class_weight=weight, max_iter=5000).fit(scaler.transform(x[rows]), y[rows])
            return lambda part, values=x: model.predict_proba(scaler.transform(values[part]))

        val_loss = {c: log_loss(y[val], fit(train, c, class_weight)(val), labels=model_labels(y)) for c in c_values}
        chosen = min(val_loss, key=val_loss.get)
        for name, predict, c in (("sklearn LR C=1", fit(train, 1.0), 1.0),
                                 ("sklearn LR, C on validation", fit(train, chosen, class_weight), chosen),
                                 ("sklearn LR C=1, train+val", fit(train | val, 1.0), 1.0)):
            labels = model_labels(y)[predict(test).argmax(1)]
            out[name]["pred"][test] = labels
            out[name]["folds"].append(classification_metrics(y[test], labels, len(classes)))
            out[name]["C"].append(c)
            for extra, (xe, ye, fe) in extras.items():
                pred = model_labels(y)[predict(slice(None), xe).argmax(1)]
                out[name]["extra"][extra].append({**classification_metrics(ye, pred, len(classes)),
                                                  **breakdown(fe, ye, pred, classes)})
    return out


def model_labels(y: np.ndarray) -> np.ndarray:
    return np.unique(y)  # scikit-learn's columns: the classes present in training (every class, in these corpora)


def toolkit_result(folder: str, model: str, category: str, cv: dict, extra_csvs: dict[str, str]) -> dict:
    """The toolkit run's per-fold metrics, pooled predictions and, for a full-batch fit, the C each fold chose."""
    chosen = []
    for i in range(1, cv["folds"] + 1):
        card = read_json(os.path.join(folder, f"{model}_{category}_cv", f"fold{i}", f"{model}_{category}.json"), "fold card")
        chosen.append((card["training"].get("lbfgs") or {}).get("C"))
    return {"folds": [f["test"] for f in cv["fold_results"]], "worst": cv["pooled_test"]["worst_speaker"],
            "C": chosen, "epochs": [f["epoch"] for f in cv["fold_results"]],
            "extra": {name: [f["extra_tests"][csv] for f in cv["fold_results"]] for name, csv in extra_csvs.items()}}


def summarise(name: str, result: dict, frame: pd.DataFrame | None = None, y: np.ndarray | None = None,
              classes: list[str] | None = None) -> dict:
    f1 = [f["f1"] for f in result["folds"]]
    if result.get("worst") is None:
        tested = ~is_copy(frame).to_numpy()  # copies are never tested
        result["worst"] = breakdown(frame[tested], y[tested], result["pred"][tested], classes)["worst_speaker"]
    worst = result["worst"]
    cs = [c for c in result.get("C", []) if c is not None]
    return {"name": name, "f1_mean": float(np.mean(f1)), "f1_std": float(np.std(f1, ddof=1)) if len(f1) > 1 else 0.0,
            "f1_folds": f1, "accuracy_mean": float(np.mean([f["accuracy"] for f in result["folds"]])),
            "worst_speaker": worst["speaker"], "worst_accuracy": worst["accuracy"],
            "C": f"{np.median(cs):.3g} ({min(cs):.3g}-{max(cs):.3g})" if cs else "-",
            "extra": {e: extra_summary(folds) for e, folds in result.get("extra", {}).items()}}


def extra_summary(folds: list[dict]) -> dict:
    """One corpus scored by every fold model: F1 mean ± std over the models, each speaker's accuracy averaged over
    them, and the worst speaker by that average."""
    f1 = [f["f1"] for f in folds]
    speakers = pd.DataFrame([{s: v["accuracy"] for s, v in f["per_speaker"].items()} for f in folds]).mean()
    return {"f1_mean": float(np.mean(f1)), "f1_std": float(np.std(f1, ddof=1)) if len(f1) > 1 else 0.0, "f1_folds": f1,
            "per_speaker": speakers.round(4).to_dict(), "worst_speaker": str(speakers.idxmin()),
            "worst_accuracy": float(speakers.min())}


def extra_features(folder: str, category: str, normalize: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """An extra corpus's values, labels and rows (all its clips), and its {category}_all.csv for train_cnn.py."""
    x, y, frame, _ = features(folder, category, normalize)
    csv = os.path.join(folder, f"{category}_all.csv")
    if not os.path.isfile(csv):
        parts = [pd.read_csv(os.path.join(folder, f"{category}_{s}.csv")) for s in ("train", "val", "test")]
        write_csv(pd.concat(parts, ignore_index=True), csv)
    return x, y, frame


def voice_families(folder: str) -> pd.Series | None:
    """Each speaker's voice families (lists), from the voice_families.csv of a `--voices wide` corpus whose stage-2
    folder this is; None for other corpora."""
    path = os.path.join(folder, "..", "voice_families.csv")
    if not os.path.isfile(path):
        return None
    return pd.read_csv(path, dtype=str).set_index("ActorID")["families"].str.split("+")


def by_family(accuracy: pd.Series, families: pd.Series) -> dict[str, pd.Series]:
    """Per voice family (sorted by name), the accuracies of the speakers who have it."""
    return {family: accuracy[[s for s in accuracy.index if family in families[s]]]
            for family in sorted({f for fs in families for f in fs})}


def family_table(rows: list[dict], extras: dict[str, str]) -> str:
    """Per voice family of each extra corpus that lists them (voice_families.csv): every head's mean speaker
    accuracy over the speakers with that family (and the lowest)."""
    out = []
    for name, folder in extras.items():
        families = voice_families(folder)
        if families is None:
            continue
        names = list(by_family(pd.Series(dtype=float), families))
        lines = [[r["category"], r["normalize"], r["name"],
                  *(f"{a.mean():.2f} ({a.min():.2f})"
                    for a in by_family(pd.Series(r["extra"][name]["per_speaker"]), families).values())] for r in rows]
        out += [f"Accuracy per voice family on {name} (mean over its speakers of each speaker's accuracy averaged over "
                f"the fold models; lowest speaker in brackets):", "",
                markdown(["category", "normalize", "head", *names], lines), ""]
    return "\n".join(out)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table: the header, its rule, one line per row of cells."""
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(cells) + " |" for cells in rows)])


def table(rows: list[dict], extras: list[str] = ()) -> str:
    header = ["category", "normalize", "head", "weighted F1 (mean ± std over folds)", "accuracy", "worst speaker (acc.)",
              "C: median (range over folds)", *(f"{e}: {column}" for e in extras for column in ("F1", "worst speaker (acc.)"))]
    return markdown(header, [[r["category"], r["normalize"], r["name"], f"{r['f1_mean']:.3f} ± {r['f1_std']:.3f}",
                              f"{r['accuracy_mean']:.3f}", f"{r['worst_speaker']} ({r['worst_accuracy']:.2f})", r["C"],
                              *(cell for x in (r["extra"][e] for e in extras)
                                for cell in (f"{x['f1_mean']:.3f} ± {x['f1_std']:.3f}",
                                             f"{x['worst_speaker']} ({x['worst_accuracy']:.2f})"))] for r in rows])


def named(items: list[str], flag: str, p: argparse.ArgumentParser, bare: bool = False) -> dict[str, str]:
    """NAME=FOLDER arguments (a bare FOLDER is named '' where `bare`), each folder a stage-2 output."""
    pairs = dict(e.split("=", 1) if "=" in e else ("", e) for e in items)
    if len(pairs) != len(items) or ("" in pairs and not bare) or not all(os.path.isdir(f) for f in pairs.values()):
        p.error(f"{flag} {' '.join(items)}: give NAME=FOLDER, each folder a stage-2 output of the same feature type")
    return pairs


def named_folders(items: list[str], flag: str, p: argparse.ArgumentParser) -> dict[str, list[str]]:
    """NAME=FOLDER,FOLDER arguments: one corpus's stage-2 folder for each of several feature types, in order."""
    folders = {name: where.split(",") for name, where in (e.split("=", 1) for e in items if "=" in e)}
    if len(folders) != len(items) or not all(os.path.isdir(f) for where in folders.values() for f in where):
        p.error(f"{flag} {' '.join(items)}: give NAME=FOLDER[,FOLDER], each folder a stage-2 output")
    return folders


def labelled(name: str, data: str) -> str:
    return f"{name} · {data}" if data else name


def compare(args: argparse.Namespace, data: dict[str, str], extras: dict[str, str], seed: int, out: str) -> list[dict]:
    """Every head × recipe × training set (and scikit-learn on each set) on the same folds of one seed."""
    rows = []
    for category in args.categories:
        for normalize in args.normalize:
            folder = os.path.join(out, f"{category}_{normalize}")
            cvs = {}
            extra_sets = {name: extra_features(f, category, normalize) for name, f in extras.items()}
            extra_csvs = {name: os.path.abspath(os.path.join(f, f"{category}_all.csv")) for name, f in extras.items()}
            for dname, dfolder in data.items():
                for model in args.models:
                    for recipe in args.recipes:
                        runs = os.path.join(folder, f"{dname}_{recipe}" if dname else recipe)
                        summary = os.path.join(runs, f"{model}_{category}_cv.json")
                        if not os.path.isfile(summary) and args.table_only:
                            continue
                        if not os.path.isfile(summary):
                            os.makedirs(runs, exist_ok=True)
                            run("train_cnn.py", "--csv_load_path", dfolder, "--category", category, "--model", model,
                                "--recipe", recipe, "--folds", str(args.folds), "--seed", str(seed), "--epochs",
                                str(args.epochs), "--normalize", normalize, "--threads", "1", "--model_save_path", runs,
                                *args.train_flags.split(), *(["--extra_test_csv", *extra_csvs.values()] if extras else []),
                                log=os.path.join(runs, f"{model}_{category}_cv.log"))
                        cvs[(dname, model, recipe)] = (runs, read_json(summary, "cross-validation summary"))
            if not cvs:
                continue
            folds = {tuple(tuple(f["test_speakers"]) for f in cv["fold_results"]) for _, cv in cvs.values()}
            if len(folds) != 1:
                sys.exit(f"error: {category}, normalize {normalize}: the toolkit runs were tested on different folds")
            reference = next(iter(cvs.values()))[1]
            recipe = RECIPES["vector"]
            for dname, dfolder in data.items():
                x, y, frame, classes = features(dfolder, category, normalize)
                baselines = sklearn_folds(x, y, frame, classes, reference, args.sklearn_C or list(recipe.C),
                                          "balanced" if recipe.class_weights == "balanced" else None, extra_sets)
                for name, result in baselines.items():
                    rows.append({"category": category, "normalize": normalize, "values": len(x[0]),
                                 **summarise(labelled(name, dname), result, frame, y, classes)})
            for (dname, model, recipe), (runs, cv) in cvs.items():
                name = f"toolkit {model}, --recipe {recipe}" + (" (full-batch L-BFGS)" if RECIPES[recipe].optimizer == "lbfgs" else " (AdamW)")
                rows.append({"category": category, "normalize": normalize,
                             **summarise(labelled(name, dname), toolkit_result(runs, model, category, cv, extra_csvs))})
    return rows


def over_seeds(per_seed: dict[int, list[dict]], extras: list[str]) -> list[dict]:
    """One row per head over the seeds (each a new fold assignment and initialisation): F1 mean ± std (ddof 1) of
    the seed means, the worst speaker's accuracy averaged over seeds (and the lowest), and each extra corpus's
    speakers' accuracy averaged over the seeds' fold models."""
    key = lambda r: (r["category"], r["normalize"], r["name"])  # noqa: E731
    out = []
    for first in next(iter(per_seed.values())):
        runs = [r for rows in per_seed.values() for r in rows if key(r) == key(first)]
        if len(runs) < len(per_seed):
            continue
        row = {**{k: first[k] for k in ("category", "normalize", "name")}, **mean_sd([r["f1_mean"] for r in runs]),
               "worst_accuracy": float(np.mean([r["worst_accuracy"] for r in runs])),
               "worst_lowest": float(min(r["worst_accuracy"] for r in runs)), "extra": {}}
        for e in extras:
            speakers = pd.DataFrame([r["extra"][e]["per_speaker"] for r in runs]).mean()
            row["extra"][e] = {**mean_sd([r["extra"][e]["f1_mean"] for r in runs]),
                               "worst_accuracy": float(np.mean([r["extra"][e]["worst_accuracy"] for r in runs])),
                               "per_speaker": speakers.round(4).to_dict()}
        out.append(row)
    return out


def mean_sd(values: list[float]) -> dict:
    return {"f1_mean": float(np.mean(values)), "f1_std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "f1_seeds": [float(v) for v in values]}


def seeds_table(rows: list[dict], extras: list[str]) -> str:
    header = ["category", "normalize", "head", "weighted F1 (mean ± sd over seeds)",
              "worst speaker acc. (mean over seeds; lowest)",
              *(f"{e}: {column}" for e in extras for column in ("F1", "worst speaker acc. (mean over seeds)"))]
    return markdown(header, [[r["category"], r["normalize"], r["name"], f"{r['f1_mean']:.3f} ± {r['f1_std']:.3f}",
                              f"{r['worst_accuracy']:.2f} ({r['worst_lowest']:.2f})",
                              *(cell for x in (r["extra"][e] for e in extras)
                                for cell in (f"{x['f1_mean']:.3f} ± {x['f1_std']:.3f}", f"{x['worst_accuracy']:.2f}"))]
                             for r in rows])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, nargs="+", metavar="[NAME=]FOLDER",
                   help="stage-2 vector feature folder: {category}_train/val/test.csv; several as NAME=FOLDER (e.g. the "
                        "same corpus with augmented copies, experiments/fold_copies.py): every one on the same folds")
    p.add_argument("--out", required=True, help="folder for the runs, logs and the table")
    p.add_argument("--categories", nargs="+", default=["sex", "emotion"])
    p.add_argument("--normalize", nargs="+", default=list(NORMALIZE), choices=NORMALIZE)
    p.add_argument("--models", nargs="+", default=["linear", "mlp"], help="toolkit vector heads")
    p.add_argument("--recipes", nargs="+", default=["vector", "default"], choices=list(RECIPES),
                   help="train_cnn.py --recipe of each head ('vector': the heads' own, full-batch L-BFGS)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, nargs="+", default=[42],
                   help="fold assignment and initialisation; several: one comparison each (in OUT/seed{S}/) and a "
                        "table of their mean ± sd")
    p.add_argument("--epochs", type=int, default=30, help="train_cnn.py --epochs (AdamW recipes; 'vector' has one per C)")
    p.add_argument("--train_flags", default="", help="more train_cnn.py flags for every run, e.g. '--patience 0'")
    p.add_argument("--extra", nargs="*", default=[], metavar="NAME=FOLDER",
                   help="another corpus's stage-2 folder of the same features ({category}_train/val/test.csv), every "
                        "fold model is scored on all its clips, e.g. wide=Data/wide/egemaps (make_demo_data.py --voices wide)")
    p.add_argument("--sklearn_C", type=float, nargs="+", default=None,
                   help="the C values scikit-learn's 'C on validation' tries (default: the vector recipe's; fewer is "
                        "faster where large C converges slowly, e.g. emotion with speaker normalisation)")
    p.add_argument("--table_only", action="store_true", help="train nothing: the table of the runs that have finished")
    p.add_argument("--markdown", default=None, help="also put the table between the markers of this file")
    p.add_argument("--section", default="heads", help="the markers' name: <!-- compare_heads.py: SECTION -->")
    args = p.parse_args(argv)
    extras = named(args.extra, "--extra", p)
    data = named(args.data, "--data", p, bare=len(args.data) == 1)

    per_seed = {}
    for seed in args.seed:
        out = args.out if len(args.seed) == 1 else os.path.join(args.out, f"seed{seed}")
        rows = compare(args, data, extras, seed, out)
        if not rows:
            continue
        text = (f"Features: {', '.join(f'`{os.path.abspath(f)}`' + (f' ({n})' if n else '') for n, f in data.items())} "
                f"({rows[0]['values']} values per clip). {args.folds}-fold speaker-grouped cross-validation (seed {seed}), "
                f"the toolkit's folds for every row; weighted F1 mean ± std over folds (ddof 1); worst speaker: lowest "
                f"accuracy of any speaker (each tested once)."
                + "".join(f" {n}: `{os.path.abspath(f)}`, every clip scored by every fold model." for n, f in extras.items())
                + f"\n\n{table(rows, list(extras))}\n\n{family_table(rows, extras)}")
        write_outputs(out, text, rows)
        per_seed[seed] = rows
    if len(per_seed) > 1:
        rows = over_seeds(per_seed, list(extras))
        text = (f"{args.folds}-fold speaker-grouped cross-validation, seeds {' '.join(map(str, per_seed))} (each a new "
                f"fold assignment and initialisation; every row of a seed on that seed's folds). Per seed: the mean over "
                f"folds; here the mean ± sd (ddof 1) of those seed means. Per-seed tables: `{args.out}/seed*/compare_heads.md`."
                + f"\n\n{seeds_table(rows, list(extras))}\n\n{family_table(rows, extras)}")
        write_outputs(args.out, text, rows)
    elif not per_seed:
        sys.exit("error: no run has finished (--table_only)")
    if args.markdown:
        write_table(args.markdown, text + f"\nCommand: `python3 experiments/compare_heads.py {' '.join(argv or sys.argv[1:])}`\n",
                    args.section, tool="compare_heads.py")
    print(text)


def write_outputs(out: str, text: str, rows: list[dict], name: str = "compare_heads") -> None:
    """The table as {out}/{name}.md and its rows as {out}/{name}.json."""
    os.makedirs(out, exist_ok=True)
    with atomic_path(os.path.join(out, f"{name}.md")) as tmp, open(tmp, "w") as f:
        f.write(text)
    write_json(rows, os.path.join(out, f"{name}.json"))


if __name__ == "__main__":
    main()
