"""A quick look at how a feature type carries over to voices never heard, with scikit-learn, per voice family.

Train StandardScaler + LogisticRegression on every clip of one corpus (a stage-2 vector feature folder, all three
split CSVs pooled), optionally with K augmented copies of each clip (the toolkit's waveform transforms, made here on
the fly with the same feature's extractor), and score every clip of other corpora: weighted F1 / accuracy, the
worst speaker, speakers below 0.7, and for corpora made with `make_demo_data.py --voices wide` each voice family's
mean speaker accuracy. It is a screening tool (one model, no folds): choose with it, then measure the choice with
compare_heads.py's speaker cross-validation.

    python3 experiments/quick_transfer.py --train Data/demo91/ltas --test widedev=Data/widedev/ltas --category sex
    python3 experiments/quick_transfer.py --train Data/demo91/egemaps --test widedev=Data/widedev/egemaps \\
        --category sex --copies 2 --transforms f0:1,reverb:0.4,noise:0.4,telephone:0.2,codec:0.2 --f0_semitones 4 9
"""
from __future__ import annotations

import argparse
import os
import sys
from multiprocessing import Pool

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from compare_heads import by_family, features, voice_families  # noqa: E402
from toolkit.augmentation import wave_augment  # noqa: E402
from toolkit.evaluation.metrics import breakdown, classification_metrics  # noqa: E402
from toolkit.features import feature_of_table, params_beside  # noqa: E402
from toolkit.io.audio import load_audio  # noqa: E402

_JOB: dict = {}


def copies_of(path: str, index: int) -> np.ndarray:
    """(K, D): the clip's K augmented copies, each through a chain drawn from (seed, clip index, copy)."""
    feature, spec, k, seed = _JOB["feature"], _JOB["spec"], _JOB["copies"], _JOB["seed"]
    audio = load_audio(path, feature.params.sr)
    out = []
    for copy in range(k):
        rng = np.random.default_rng([seed, index, copy])
        chain = wave_augment.draw_chain(spec, rng, feature.params.sr, at_least_one=True, babble=False)
        out.append(feature.extract(wave_augment.apply_chain(audio, feature.params.sr, chain, rng)).ravel())
    return np.stack(out)


def _copies_job(item: tuple[int, str]) -> np.ndarray:
    return copies_of(item[1], item[0])


def augmented(folder: str, frame: pd.DataFrame, category: str, args) -> np.ndarray:
    """(N * K, D) copies of every clip of `frame`, in clip order then copy order."""
    table = pd.read_csv(os.path.join(folder, f"{category}_train.csv"), dtype=str)
    feature_type = feature_of_table(table, folder)
    first = os.path.join(folder, table[feature_type.column()].iloc[0])
    feature = feature_type.from_dict(params_beside(first))
    if args.f0_semitones:
        wave_augment.F0_SEMITONES = tuple(args.f0_semitones)
    _JOB.update(feature=feature, spec=wave_augment.parse_spec(args.transforms), copies=args.copies, seed=args.seed)
    paths = [os.path.normpath(os.path.join(folder, p)) for p in frame["Audio_file_path"]]
    with Pool(args.workers) as pool:
        return np.concatenate(pool.map(_copies_job, list(enumerate(paths)), chunksize=16))


def scores(model, scaler, x: np.ndarray, y: np.ndarray, frame: pd.DataFrame, folder: str, classes: list[str]) -> dict:
    pred = model.predict(scaler.transform(x))
    metrics = {**classification_metrics(y, pred, len(classes)), **breakdown(frame, y, pred, classes)}
    accuracy = pd.Series({s: v["accuracy"] for s, v in metrics["per_speaker"].items()})
    row = {"f1": metrics["f1"], "accuracy": metrics["accuracy"], "worst_speaker": metrics["worst_speaker"]["speaker"],
           "worst_accuracy": metrics["worst_speaker"]["accuracy"], "below_0.7": int((accuracy < 0.7).sum())}
    families = voice_families(folder)
    if families is not None:
        row.update({family: float(a.mean()) for family, a in by_family(accuracy, families).items()})
    return row


def main(argv: list[str] | None = None) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="stage-2 vector feature folder of the training corpus")
    p.add_argument("--test", nargs="+", required=True, metavar="NAME=FOLDER", help="corpora to score (same feature)")
    p.add_argument("--category", required=True)
    p.add_argument("--normalize", default="none", choices=["none", "speaker"])
    p.add_argument("--C", type=float, nargs="+", default=[1.0], help="LogisticRegression C values (one row each)")
    p.add_argument("--copies", type=int, default=0, help="augmented copies of every training clip (0: none)")
    p.add_argument("--transforms", default="f0:0.5,reverb:0.4,noise:0.4,telephone:0.2,codec:0.2",
                   help="augmentation.py --transforms of the copies")
    p.add_argument("--f0_semitones", type=float, nargs=2, default=None, help="the f0 transform's shift range")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=None, help="also write the table as CSV here")
    args = p.parse_args(argv)
    if args.copies and args.normalize != "none":
        p.error("--copies with --normalize speaker is not supported here (copies would change a speaker's statistics)")

    x, y, frame, classes = features(args.train, args.category, args.normalize)
    if args.copies:
        x = np.concatenate([x, augmented(args.train, frame, args.category, args)])
        y = np.concatenate([y, np.repeat(y, args.copies)])
    tests = dict(t.split("=", 1) for t in args.test)
    loaded = {name: features(folder, args.category, args.normalize) for name, folder in tests.items()}
    rows = []
    for c in args.C:
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x), y)
        for name, (xt, yt, ft, _) in loaded.items():
            rows.append({"C": c, "copies": args.copies, "test": name,
                         **scores(model, scaler, xt, yt, ft, tests[name], classes)})
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
