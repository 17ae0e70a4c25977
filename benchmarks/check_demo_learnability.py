"""Is the demo corpus learnable? A quick proxy for the CNNs: logistic regression on log-mel summary stats.

Features per clip: mean and std over time of each of the 180 log-mel bands (the toolkit's
spectrogram parameters, power_to_db ref=max), plus clip duration and RMS. Splits are
speaker-disjoint (GroupShuffleSplit by actor, 20% test), repeated a few times because a
30-actor corpus has only 6 test actors. Also prints how far a single threshold on median F0
gets for sex: it should be good but not perfect (the synthetic F0 ranges overlap).

    python3 benchmarks/check_demo_learnability.py --data Data/demo     # builds it first if missing
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def age_group(age: int) -> str:
    return "<30s" if age <= 29 else ">60s" if age >= 60 else f"{age // 10 * 10}s"


def clip_features(path: str) -> tuple[np.ndarray, float]:
    import librosa
    import soundfile as sf

    y, sr = sf.read(path, dtype="float32")
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1536, hop_length=512, n_mels=180)
    db = librosa.power_to_db(mel, ref=np.max)
    f0 = librosa.yin(y, fmin=60, fmax=500, sr=sr, frame_length=1024, hop_length=256)
    voiced = np.sqrt(np.mean(librosa.util.frame(y, frame_length=1024, hop_length=256) ** 2, axis=0))
    voiced = voiced[: len(f0)] > 0.3 * voiced.max()  # loud frames: where the voice is
    feats = np.concatenate([db.mean(axis=1), db.std(axis=1), [len(y) / sr, np.sqrt(np.mean(y**2))]])
    return feats, float(np.median(f0[: len(voiced)][voiced]))


def _features(args_tuple: tuple) -> tuple[np.ndarray, float]:
    return clip_features(*args_tuple)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="Data/demo", help="demo corpus folder (built with default settings if missing)")
    parser.add_argument("--splits", type=int, default=5, help="speaker-disjoint splits to average over")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--unseen", default=None,
                        help="also train on all of --data and score a '--voices unseen' corpus here (built, 10 actors, if missing)")
    args = parser.parse_args(argv)

    from multiprocessing import Pool

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from demo.synth import build_corpus

    def load(folder: str, **build_args) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        demographics = os.path.join(folder, "VideoDemographics.csv")
        if not os.path.exists(demographics):
            build_corpus(folder, workers=args.workers, progress=False, **build_args)
        actors = {int(r["ActorID"]): r for r in csv.DictReader(open(demographics))}
        names = sorted(n for n in os.listdir(os.path.join(folder, "AudioWAV")) if n.endswith(".wav"))
        started = time.time()
        with Pool(args.workers) as pool:
            out = pool.map(_features, [(os.path.join(folder, "AudioWAV", n),) for n in names], chunksize=16)
        groups = np.array([int(n.split("_")[0]) for n in names])
        labels = {
            "sex": np.array([actors[g]["Sex"] for g in groups]),
            "emotion": np.array([n.split("_")[2] for n in names]),
            "age": np.array([age_group(int(actors[g]["Age"])) for g in groups]),
            "race": np.array([actors[g]["Race"] for g in groups]),
        }
        print(f"{folder}: {len(names)} clips, {len(actors)} actors, features in {time.time() - started:.1f} s")
        return np.stack([o[0] for o in out]), np.array([o[1] for o in out]), groups, labels

    X, f0, groups, labels = load(args.data)

    splitter = GroupShuffleSplit(n_splits=args.splits, test_size=0.2, random_state=0)
    splits = list(splitter.split(X, groups=groups))
    for category, y in labels.items():
        keep = y != "Unknown"
        scores, chance = [], []
        for train, test in splits:
            train, test = train[keep[train]], test[keep[test]]
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
            model.fit(X[train], y[train])
            scores.append(np.mean(model.predict(X[test]) == y[test]))
            values, counts = np.unique(y[train], return_counts=True)
            chance.append(np.mean(y[test] == values[np.argmax(counts)]))
        print(f"{category:8s} accuracy {np.mean(scores):.3f} (splits {', '.join(f'{s:.2f}' for s in scores)}; "
              f"chance {1 / len(np.unique(y[keep])):.2f}, majority class {np.mean(chance):.2f})")

    # Sex from one threshold on median F0, fitted on the train speakers.
    sex = labels["sex"]
    scores = []
    for train, test in splits:
        candidates = np.sort(f0[train])
        train_acc = [np.mean((f0[train] > c) == (sex[train] == "Female")) for c in candidates]
        threshold = candidates[int(np.argmax(train_acc))]
        scores.append(np.mean((f0[test] > threshold) == (sex[test] == "Female")))
    print(f"sex from a median-F0 threshold alone: {np.mean(scores):.3f} (should be < 1)")

    if args.unseen:
        X2, _, _, labels2 = load(args.unseen, actors=10, voices="unseen")
        for category in ("sex", "emotion", "age"):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
            model.fit(X, labels[category])
            print(f"{category:8s} trained on {args.data}, accuracy on unseen voices {np.mean(model.predict(X2) == labels2[category]):.3f}")


if __name__ == "__main__":
    main()
