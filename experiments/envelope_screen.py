"""Screening of spectral-envelope features and extra augmented copies for sex on voices never heard (issue 25,
round 5), with scikit-learn: one model trained on every clip of the training corpus plus its copies, every clip of
the test corpora scored (quick_transfer.py's protocol; choose on widedev, report wide).

Features per clip, cached in --cache:
  ltas       the toolkit's `--features ltas` (80: per mel band the mean and the spread over loud frames)
  ltas_mean  its 40 means only (no frame-to-frame spread)
  ltas_pairs its 80 values averaged over pairs of neighbouring bands (coarser bands)
  cepstral   the cepstral log envelope (lifter 2.5 ms: no harmonics, so no pitch) on 64 log-spaced points 150-7000 Hz,
             mean over loud frames
  scale      the lag (log-frequency steps of 1.7 %) at which a clip's envelope best matches the training corpus's
             mean envelope over 350-4500 Hz: an estimate of the vocal tract's length relative to the corpus's
Training rows: the corpus's clips, the copies in --copies (augmentation.py's output, e.g. experiments/fold_copies.py's),
and one more copy of every clip for each spec in --extra (toolkit transforms, drawn per clip with seed 99).
`--explain SPEAKER` prints, for an `ltas` model, the features that push that speaker's clips furthest from the
training men's mean logit.

    python experiments/envelope_screen.py --train /tmp/voices/d91 --copies /tmp/voices/copies_retune \\
        --test widedev=/tmp/voices/widedev wide=/tmp/voices/wide --cache /tmp/envelope_cache --extra breath:1 formants:1
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from multiprocessing import Pool

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from toolkit.augmentation import wave_augment  # noqa: E402
from toolkit.features.ltas import LtasParams, ltas  # noqa: E402
from toolkit.io.audio import load_audio  # noqa: E402

SR, N_FFT, HOP = 16000, 512, 160
ENVELOPE_HZ = np.geomspace(150, 7000, 64)
SCALE_HZ = np.geomspace(100, 7500, 256)  # 1.7 % a step
SCALE_BAND = np.where((SCALE_HZ > 350) & (SCALE_HZ < 4500))[0]
SCALE_LAGS = np.arange(-20, 21)
_SPEC: dict = {}


def envelopes(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean level-free cepstral log envelope of the loud frames, at ENVELOPE_HZ and at SCALE_HZ."""
    n = 1 + (len(audio) - N_FFT) // HOP
    frames = audio[np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]] * np.hanning(N_FFT)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10
    level = 10 * np.log10(power.sum(1))
    envelope = wave_augment.spectral_envelope(np.log(power[level > level.max() - 30]), int(0.0025 * SR))
    envelope = (envelope - envelope.mean(1, keepdims=True)).mean(0) * 10 / np.log(10)
    bins = np.arange(len(envelope)) * SR / N_FFT
    return np.interp(ENVELOPE_HZ, bins, envelope), np.interp(SCALE_HZ, bins, envelope)


def clip_features(job: tuple[int, str]) -> np.ndarray:
    index, path = job
    audio = load_audio(path, SR)
    if _SPEC:
        rng = np.random.default_rng([99, index])
        audio = wave_augment.apply_chain(audio, SR, wave_augment.draw_chain(_SPEC, rng, SR, babble=False), rng)
    fine, scale = envelopes(audio.astype(np.float64))
    return np.concatenate([ltas(audio, LtasParams()), fine, scale]).astype(np.float32)


def _init(spec: dict) -> None:
    _SPEC.clear()
    _SPEC.update(spec)


def corpus(folder: str, csv: str, cache: str, spec: str = "") -> tuple[np.ndarray, pd.DataFrame]:
    """Every clip's features (rows of `csv` under `folder`), through the transforms of `spec` when given."""
    frame = pd.read_csv(os.path.join(folder, csv), dtype=str)
    where = hashlib.sha1(os.path.abspath(os.path.join(folder, csv)).encode()).hexdigest()[:8]  # same-named folders apart
    name = f"{os.path.basename(os.path.normpath(folder))}_{where}_{spec.replace(':', '').replace(',', '_') or 'plain'}.npy"
    path = os.path.join(cache, name)
    if not os.path.exists(path):
        jobs = list(enumerate(os.path.join(folder, p) for p in frame["Audio_file_path"]))
        with Pool(2, initializer=_init, initargs=(wave_augment.parse_spec(spec) if spec else {},)) as pool:
            np.save(path, np.stack(pool.map(clip_features, jobs, chunksize=16)))
    return np.load(path), frame


def view(x: np.ndarray, name: str, template: np.ndarray) -> np.ndarray:
    """The named feature (see the module docstring) from the cached columns."""
    if name == "ltas":
        return x[:, :80]
    if name == "ltas_mean":
        return x[:, :40]
    if name == "ltas_pairs":
        return x[:, :80].reshape(len(x), 40, 2).mean(2)
    if name == "cepstral":
        return x[:, 80:144]
    if name == "scale":
        standard = lambda v: (v - v.mean(-1, keepdims=True)) / (v.std(-1, keepdims=True) + 1e-9)  # noqa: E731
        envelope, reference = x[:, 144:400], standard(template[SCALE_BAND])
        match = np.stack([(standard(envelope[:, SCALE_BAND + k]) * reference).mean(1) for k in SCALE_LAGS], 1)
        return SCALE_LAGS[match.argmax(1)][:, None].astype(np.float64)
    return np.hstack([view(x, part, template) for part in name.split("+")])


def main(argv: list[str] | None = None) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="training corpus folder (make_demo_data.py output, stage 1 run)")
    p.add_argument("--copies", default=None, help="folder of augmentation.py's copies of it (sex_augmented.csv)")
    p.add_argument("--extra", nargs="*", default=[], help="transform specs: one more copy of every clip each")
    p.add_argument("--more_voices", nargs="*", default=[], metavar="FOLDER",
                   help="other corpora whose clips also train (as they are: no copies)")
    p.add_argument("--test", nargs="+", required=True, metavar="NAME=FOLDER")
    p.add_argument("--features", nargs="+", default=["ltas", "ltas_mean", "ltas_pairs", "cepstral", "scale", "ltas+scale"])
    p.add_argument("--C", type=float, nargs="+", default=[1.0, 10.0])
    p.add_argument("--explain", nargs="*", default=[], metavar="NAME=SPEAKER")
    p.add_argument("--cache", required=True)
    args = p.parse_args(argv)
    if any("=" not in t for t in args.test + args.explain):
        p.error("--test and --explain take NAME=FOLDER and NAME=SPEAKER")
    tables = [os.path.join(f, "sex_with_audio_path.csv") for f in [args.train, *args.more_voices]]
    tables += [os.path.join(t.split("=", 1)[1], "sex_with_audio_path.csv") for t in args.test]
    tables += [os.path.join(args.copies, "sex_augmented.csv")] if args.copies else []
    for table in tables:  # checked before any features are computed
        if not os.path.isfile(table):
            p.error(f"{table}: no such file; run data_preprocessing.py --category sex (or augmentation.py) there first")
    os.makedirs(args.cache, exist_ok=True)

    x, frame = corpus(args.train, "sex_with_audio_path.csv", args.cache)
    template = x[:, 144:400].mean(0)
    parts = [(x, frame["sex"].to_numpy())]
    if args.copies:
        xc, fc = corpus(args.copies, "sex_augmented.csv", args.cache)
        parts.append((xc, fc["sex"].to_numpy()))
    for spec in args.extra:
        parts.append((corpus(args.train, "sex_with_audio_path.csv", args.cache, spec)[0], frame["sex"].to_numpy()))
    for folder in args.more_voices:
        xm, fm = corpus(folder, "sex_with_audio_path.csv", args.cache)
        parts.append((xm, fm["sex"].to_numpy()))
    x_train, y_train = np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])
    tests = {name: corpus(folder, "sex_with_audio_path.csv", args.cache)
             for name, folder in (t.split("=", 1) for t in args.test)}
    print(f"training rows: {len(x_train)} (copies: {args.copies or '-'}; extra: {' '.join(args.extra) or '-'}; "
          f"more voices: {' '.join(args.more_voices) or '-'})")
    for feature in args.features:
        for c in args.C:
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
            model.fit(view(x_train, feature, template), y_train)
            cells = []
            for name, (xt, ft) in tests.items():
                right = pd.Series(model.predict(view(xt, feature, template)) == ft["sex"].to_numpy())
                per_speaker = right.groupby(ft["ActorID"].to_numpy()).mean().sort_values()
                worst = " ".join(f"{s}:{a:.2f}" for s, a in per_speaker.head(3).items())
                cells.append(f"{name} {right.mean():.3f} (<0.7: {(per_speaker < 0.7).sum()}; {worst})")
            print(f"{feature:12s} C={c:<4g} " + " | ".join(cells), flush=True)
            if feature == "ltas" and args.explain:
                explain(model, x_train[:, :80], y_train, tests, args.explain)


def explain(model, x_train: np.ndarray, y_train: np.ndarray, tests: dict, speakers: list[str]) -> None:
    """Per speaker: the mean logit for Male and the features pushing it furthest from the training men's."""
    from toolkit.io.melspec import mel_basis

    scaler, logistic = model[0], model[-1]
    sign = 1.0 if logistic.classes_[1] == "Male" else -1.0
    weights = sign * logistic.coef_[0]
    basis = mel_basis(LtasParams())
    centres = basis @ (np.arange(basis.shape[1]) * SR / N_FFT) / basis.sum(1)
    names = [f"{'mean' if i < 40 else 'spread'}@{centres[i % 40]:.0f}Hz" for i in range(80)]
    men = scaler.transform(x_train[y_train == "Male"]).mean(0)
    for item in speakers:
        corpus_name, speaker = item.split("=")
        xt, ft = tests[corpus_name]
        rows = xt[ft["ActorID"].to_numpy() == speaker][:, :80]
        push = (scaler.transform(rows).mean(0) - men) * weights
        top = ", ".join(f"{names[i]} {push[i]:+.1f}" for i in np.argsort(push)[:4])
        print(f"  {corpus_name} {speaker}: mean logit for Male {sign * model.decision_function(rows).mean():+.1f} "
              f"(training men {men @ weights + sign * logistic.intercept_[0]:+.1f}); furthest towards Female: {top}")


if __name__ == "__main__":
    main()
