"""Synthesise a small CREMA-D-shaped demo corpus (AudioWAV/ + VideoDemographics.csv, and the same clips as a plain
table, clips.csv: file, speaker, sex, emotion).

Example:
    python3 make_demo_data.py --out Data/demo
    python3 make_demo_data.py --out Data/demo_unseen --actors 10 --voices unseen
    python3 make_demo_data.py --out Data/demo_wide --actors 48 --clips_per_actor 24 --seed 1 --voices wide
    python3 data_preprocessing.py --csv_file VideoDemographics.csv --csv_path Data/demo/ --audio_path Data/demo/AudioWAV/ --category sex

The voices come from a source-filter model (demo/synth.py): sex, age, emotion and (mildly)
race are audible in the clips, so the toolkit's models have something real to learn.

--voices wide: the voice families (every speaker has one or two; a listener still hears their sex and emotion):
{families}
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import argparse
import os

from demo.synth import VOICE_FAMILIES, VOICE_SETTINGS, build_corpus
from toolkit.config import number, seed_value
from toolkit.cli import run_main

__doc__ = __doc__.format(families="\n".join(f"  {name:14s}{what}" for name, what in VOICE_FAMILIES.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="Data/demo", help="output folder (default: Data/demo)")
    parser.add_argument("--actors", type=number(int, 1, 10_000), default=30, help="labeled actors, IDs from 1001 (default: 30)")
    parser.add_argument("--seed", type=seed_value, default=0, help="random seed; the same seed gives byte-identical WAVs (default: 0)")
    parser.add_argument("--clips_per_actor", type=number(int, 1, 100_000), default=None,
                        help="clips per actor, spread evenly over the 6 emotions (default: all 82, as in CREMA-D)")
    parser.add_argument("--workers", type=number(int, 1, 1024), default=min(4, os.cpu_count() or 1),
                        help="processes synthesising clips (default: min(4, CPU count))")
    parser.add_argument("--unlabeled_actors", type=number(int, 0, 10_000), default=0,
                        help="extra actors (IDs from 2001) written to {out}/Unlabeled/AudioWAV/ and listed in "
                             "{out}/unlabeled.csv without labels, for pseudo-labeling (default: 0)")
    parser.add_argument("--voices", choices=list(VOICE_SETTINGS), default="standard",
                        help="'unseen' draws voices from a different generator setting (pitch and formants beyond the "
                             "training ranges, other noise, another glottal pulse; IDs from 3001, unlabeled from 4001) "
                             "to test generalisation to new kinds of voices; 'boundary' (IDs from 5001) puts both "
                             "sexes at the edge of the other's range, a stress test; 'wide' (IDs from 7001, unlabeled "
                             "from 8001; half women, half men) gives every speaker one or two voice families the "
                             "training voices never have, taken in turn within each sex (listed below; which speaker "
                             "has which: {out}/voice_families.csv): the honest development set for voices never heard "
                             "(default: standard)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.actors < 1:
        parser.error("--actors must be at least 1")
    if args.clips_per_actor is not None and args.clips_per_actor < 1:
        parser.error("--clips_per_actor must be at least 1")
    if args.unlabeled_actors < 0 or args.workers < 1:
        parser.error("--unlabeled_actors must be >= 0 and --workers >= 1")

    s = build_corpus(args.out, actors=args.actors, seed=args.seed, clips_per_actor=args.clips_per_actor,
                     workers=args.workers, unlabeled_actors=args.unlabeled_actors, voices=args.voices,
                     progress=not args.quiet)
    unlabeled = f" + {s['unlabeled_actors']} unlabeled" if s["unlabeled_actors"] else ""
    print(f"{args.out}: {s['written']} clips written ({s['clips']} in all), {s['actors']} actors{unlabeled}, "
          f"{s['hours']:.2f} h of audio, {s['seconds']:.1f} s")


if __name__ == "__main__":
    run_main(main)  # like every stage: Ctrl-C and SIGTERM end it in one line, and its pool workers end silently
