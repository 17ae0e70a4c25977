"""Stage 2's feature path, clips per second; for spectrograms side by side with the seed's method in one run.

The seed made each image with matplotlib (imshow -> savefig JPG), one clip at a time. Stage 2 computes the log-mel
in numpy (librosa's numbers), writes an 8-bit PNG directly and spreads the clips over worker processes. Both run here
on the same synthetic CREMA-D-shaped clips (demo/synth.py), and the full CREMA-D run (7,442 clips, 5.26 h) is
extrapolated.
--features egemaps times the openSMILE path instead (there is no seed method to compare it with). Besides wall
time, the CPU seconds per clip (all processes) are reported: they hardly depend on what else the machine runs.

    python3 benchmarks/bench_spectrograms.py                                  # small: about a minute on 2 cores
    python3 benchmarks/bench_spectrograms.py --clips 1000 --reference_clips 200   # tighter figures
    python3 benchmarks/bench_spectrograms.py --features egemaps --json runs/bench/egemaps.json
"""
from __future__ import annotations

import argparse
import glob
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from demo.synth import build_corpus  # noqa: E402
from generate_mel_spectrograms import make_feature_files  # noqa: E402  (stage 2's own function: the path being timed)
from toolkit.features import FEATURES  # noqa: E402
from toolkit.features.mel import MelParams  # noqa: E402
from toolkit.fileio import write_json  # noqa: E402

CREMA_D_CLIPS = 7442
CREMA_D_SECONDS = 5.26 * 3600


def seed_method(wav: str, jpg: str, p: MelParams) -> None:
    """The seed's way to make one image: a matplotlib figure of the dB mel spectrogram, saved as a JPG.

    Audio is loaded at 16 kHz (what CREMA-D is), not librosa's 22.05 kHz default, so the reference does no
    resampling: if anything this flatters the seed.
    """
    import librosa
    import matplotlib.pyplot as plt

    y, sr = librosa.load(wav, sr=p.sr)
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=p.n_fft, hop_length=p.hop_length, n_mels=p.n_mels)
    db = librosa.power_to_db(mel, ref=np.max)
    fig = plt.figure()
    plt.imshow(db, origin="lower", aspect="auto")
    plt.axis("off")
    fig.savefig(jpg)
    plt.close(fig)


def make_clips(folder: str, clips: int, seed: int, workers: int) -> list[str]:
    """At least `clips` synthetic clips (12 per speaker, all emotions), reused when the folder already has them."""
    wavs = sorted(glob.glob(os.path.join(folder, "AudioWAV", "*.wav")))
    if len(wavs) < clips:
        build_corpus(folder, actors=-(-clips // 12), clips_per_actor=12, seed=seed, workers=workers, progress=False)
        wavs = sorted(glob.glob(os.path.join(folder, "AudioWAV", "*.wav")))
    return wavs[:clips]


def audio_seconds(wavs: list[str]) -> float:
    import soundfile as sf

    return sum(sf.info(w).duration for w in wavs)


def time_stage(corpus: str, clips: int, out: str, workers: int, features: str, no_png: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of stage 2's make_feature_files on the first `clips` clips, run in a fresh
    interpreter as a stage-2 run is: worker start-up and first-call costs count (a warm parent would hand them on).
    no_png: the features go into one rows file as the workers return them (--no_png), not into per-clip files."""
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import bench_spectrograms as b; "
            f"print(*b._time_stage(b.make_clips({corpus!r}, {clips}, 0, 1), {out!r}, {features!r}, {workers}, {no_png}))")
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"stage 2 run failed (exit {proc.returncode})")
    wall, cpu = proc.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _time_stage(wavs: list[str], out: str, features: str, workers: int, no_png: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the feature's warm-up and make_feature_files on fresh output (the pool's workers
    have exited by then)."""
    from toolkit.features.store import RowWriter

    feature = FEATURES[features]()
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    files = [os.path.join(out, os.path.splitext(os.path.basename(w))[0] + feature.storage.suffix) for w in wavs]
    t0, c0 = time.perf_counter(), _cpu_seconds()
    feature.warm_up()  # what stage 2 pays before its workers start (they inherit it)
    if no_png:
        with open(os.path.join(out, "rows.bin"), "wb") as f:
            rows = RowWriter(f, feature.storage.dtype)
            errors = make_feature_files(feature, wavs, files, workers, rows=rows)
            rows.finish(durable=False)  # as a one-process stage 2 finishes its scratch rows
    else:
        errors = make_feature_files(feature, wavs, files, workers)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    if errors:
        raise SystemExit(f"stage 2 failed on {len(errors)} clip(s), e.g. {next(iter(errors.values()))}")
    return seconds, cpu


def time_reference(wavs: list[str], out: str, p: MelParams) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the seed's method, one clip after another (its first-call warm-up done
    beforehand)."""
    import matplotlib

    matplotlib.use("Agg")
    from tqdm import tqdm

    os.makedirs(out, exist_ok=True)
    seed_method(wavs[0], os.path.join(out, "warmup.jpg"), p)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    for w in tqdm(wavs, desc="seed method", unit="clip"):
        seed_method(w, os.path.join(out, os.path.splitext(os.path.basename(w))[0] + ".jpg"), p)
    return time.perf_counter() - t0, _cpu_seconds() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=480, help="clips through stage 2's path")
    ap.add_argument("--reference_clips", type=int, default=48, help="clips through the (slow) seed method (mel only)")
    ap.add_argument("--features", choices=list(FEATURES), default="mel", help="the stage-2 feature type to time")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="stage 2 worker processes")
    ap.add_argument("--seed", type=int, default=0, help="synthetic corpus seed")
    ap.add_argument("--work", default=None, help="folder for clips and images (default: a temporary folder, removed)")
    ap.add_argument("--json", default="runs/bench/spectrograms.json", help="where the figures are written")
    args = ap.parse_args()
    if args.clips < 1 or args.reference_clips < 1 or args.workers < 1:
        ap.error("--clips, --reference_clips and --workers must be at least 1")

    reference = args.features == "mel"  # the seed made spectrograms only
    work = args.work or tempfile.mkdtemp(prefix="bench_spectrograms_")
    try:
        corpus = os.path.join(work, "corpus")
        wavs = make_clips(corpus, max(args.clips, args.reference_clips if reference else 0), args.seed, args.workers)
        ours_wavs, ref_wavs = wavs[: args.clips], wavs[: args.reference_clips]
        ours_audio = audio_seconds(ours_wavs)
        load_at_start = os.getloadavg()
        print(f"{len(wavs)} synthetic clips, mean {ours_audio / len(ours_wavs):.2f} s (CREMA-D: "
              f"{CREMA_D_SECONDS / CREMA_D_CLIPS:.2f} s); load average {load_at_start[0]:.2f}")

        runs = {}
        out = os.path.join(work, args.features)
        for name, workers, no_png in [(f"stage 2, {args.workers} workers", args.workers, False),
                                      ("stage 2, 1 process", 1, False),
                                      (f"stage 2 --no_png, {args.workers} workers", args.workers, True),
                                      ("stage 2 --no_png, 1 process", 1, True)]:
            seconds, cpu = time_stage(corpus, len(ours_wavs), out, workers, args.features, no_png)
            runs[name] = {"clips": len(ours_wavs), "seconds": seconds, "cpu_seconds": cpu, "audio_seconds": ours_audio,
                          "load_1min_after": os.getloadavg()[0]}
        if reference:
            seconds, cpu = time_reference(ref_wavs, os.path.join(work, "jpg"), MelParams())
            runs["seed method (matplotlib JPG), 1 process"] = {"clips": len(ref_wavs), "seconds": seconds, "cpu_seconds": cpu,
                                                               "audio_seconds": audio_seconds(ref_wavs),
                                                               "load_1min_after": os.getloadavg()[0]}
        # stage 2 pays a fixed start-up (worker processes, first-call costs) that a small run cannot amortise: a run
        # of one clip per worker measures it, apart from the per-clip cost, for the CREMA-D estimate
        few = ours_wavs[: args.workers]
        few_seconds, _ = time_stage(corpus, len(few), out, args.workers, args.features)

        for r in runs.values():
            r["clips_per_second"] = r["clips"] / r["seconds"]
            r["ms_per_clip"] = 1000 * r["seconds"] / r["clips"]
        stage, single = runs[f"stage 2, {args.workers} workers"], runs["stage 2, 1 process"]
        per_audio_second = (stage["seconds"] - few_seconds) / max(ours_audio - audio_seconds(few), 1e-9)
        startup = few_seconds
        # per second of audio, so clips longer or shorter than CREMA-D's do not skew the estimates
        crema_d = startup + per_audio_second * CREMA_D_SECONDS
        cpu_per_clip = single["cpu_seconds"] / single["clips"] * (CREMA_D_SECONDS / CREMA_D_CLIPS) / (ours_audio / len(ours_wavs))
        print(f"\n{'path':42s} {'clips':>6s} {'seconds':>8s} {'clips/s':>9s} {'ms/clip':>8s} {'CPU s':>7s} {'load':>5s}")
        for name, r in runs.items():
            print(f"{name:42s} {r['clips']:6d} {r['seconds']:8.2f} {r['clips_per_second']:9.1f} {r['ms_per_clip']:8.2f} "
                  f"{r.get('cpu_seconds', float('nan')):7.2f} {r['load_1min_after']:5.1f}")
        print(f"\n{args.features}: {1000 * cpu_per_clip:.1f} CPU ms per CREMA-D-length clip (one process); stage 2 = "
              f"{startup:.2f} s start-up + {1000 * per_audio_second * CREMA_D_SECONDS / CREMA_D_CLIPS:.2f} ms wall per "
              f"CREMA-D clip with {args.workers} workers (from runs of {len(few)} and {stage['clips']} clips)")
        print(f"CREMA-D (7,442 clips, 5.26 h): stage 2 {crema_d:.1f} s with {args.workers} workers"
              + ("" if reference else f"; {CREMA_D_CLIPS * cpu_per_clip / 60:.1f} CPU minutes in all"))
        figures = {"features": args.features, "runs": runs, "startup_seconds": startup, "crema_d_seconds": crema_d,
                   "cpu_ms_per_crema_d_clip": 1000 * cpu_per_clip}
        if reference:
            ref = runs["seed method (matplotlib JPG), 1 process"]
            crema_d_ref = CREMA_D_SECONDS * ref["seconds"] / ref["audio_seconds"]
            speedup = stage["clips_per_second"] / ref["clips_per_second"]
            print(f"stage 2 vs the seed method, {stage['clips']} clips: {speedup:.1f}x clips/s "
                  f"({single['clips_per_second'] / ref['clips_per_second']:.1f}x in one process); target >= 20x: "
                  f"{'met' if speedup >= 20 else 'MISSED'}")
            no_png = runs[f"stage 2 --no_png, {args.workers} workers"]
            no_png_speedup = no_png["clips_per_second"] / ref["clips_per_second"]
            print(f"stage 2 --no_png vs the seed method, {no_png['clips']} clips: {no_png_speedup:.1f}x clips/s "
                  f"({runs['stage 2 --no_png, 1 process']['clips_per_second'] / ref['clips_per_second']:.1f}x in one "
                  f"process); target >= 35x: {'met' if no_png_speedup >= 35 else 'MISSED'}")
            figures["no_png_speedup"] = no_png_speedup
            # CPU time per clip hardly depends on what else runs: the ratio to quote on a shared machine
            cpu_ms = {name: 1000 * r["cpu_seconds"] / r["clips"] for name, r in runs.items()}
            seed_cpu = cpu_ms["seed method (matplotlib JPG), 1 process"]
            print("CPU ms per clip (all processes): " + ", ".join(f"{name} {ms:.2f}" for name, ms in cpu_ms.items()))
            print(f"seed method / stage 2 in CPU time per clip: PNGs {seed_cpu / cpu_ms['stage 2, 1 process']:.1f}x, "
                  f"--no_png {seed_cpu / cpu_ms['stage 2 --no_png, 1 process']:.1f}x (one process each)")
            figures["cpu_ms_per_clip"] = cpu_ms
            print(f"CREMA-D: seed method {crema_d_ref / 60:.1f} min ({crema_d_ref / crema_d:.0f}x); target < 60 s: "
                  f"{'met' if crema_d < 60 else 'MISSED'}")
            figures.update(speedup=speedup, crema_d_seed_method_seconds=crema_d_ref)
        if args.json:
            write_json({**figures, "workers": args.workers, "loadavg_at_start": load_at_start, "loadavg": os.getloadavg(), "cpus": os.cpu_count(),
                        "date": time.strftime("%Y-%m-%d %H:%M")}, args.json)
            print(f"wrote {args.json}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
