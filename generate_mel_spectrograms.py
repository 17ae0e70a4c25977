"""Stage 2: audio -> features (log-mel spectrogram PNGs by default) + {category}_train/val/test.csv (72/8/20, stratified).

The split is speaker-disjoint (--split speaker) and puts at least one speaker of every class into the validation and
the test part whenever the data allow it; a warning says what the data cannot give (a class missing from a part, a
part with fewer than 3 speakers). --val_fraction and --test_fraction set the sizes.

--features mel (default): one lossless 8-bit PNG per clip in {save_spec_path}/mel_spectrograms/{parameter tag}/.
--features egemaps: openSMILE's eGeMAPSv02 functionals (88 values per clip), one .npy per clip in
{save_spec_path}/egemaps/{parameter tag}/; --features compare: openSMILE's ComParE_2016 functionals (6,373 values, the
INTERSPEECH challenge baseline set; 25 KB a clip), in {save_spec_path}/compare/{parameter tag}/.
--features ssl --encoder NAME_OR_DIR: a pretrained speech encoder (wav2vec2, HuBERT, WavLM, ...) run once over each
whole clip; its hidden states mean-pooled per layer, a (layers + 1, width) float16 .npy per clip in
{save_spec_path}/ssl/{parameter tag}/.
A feature file is named after its clip and a hash of the clip's audio ({clip}.{hash}.png), so one that already exists
for the same parameters and the same audio is reused (an interrupted run continues where it stopped), and one made
from other audio under the same name (another corpus, a replaced recording) never is. The split is written as CSVs
(one row per clip, with the feature file's path) and a manifest
{category}_split.json that the training stages copy into their run cards.
Each split is also packed into one file beside its CSV, {category}_{split}.store.bin with its index .store.json
(toolkit/features/store.py), which stage 3 memory-maps instead of reading the per-clip files; --no_png writes only
the stores.
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import os
import re
import shutil
import tempfile

import pandas as pd
from tqdm import tqdm

from toolkit.cli import Parser, run_main
from toolkit.config import fraction, number, positive_float, positive_int, seed_value
from toolkit.errors import ToolkitError
from toolkit.features import FEATURES, STORED, FeatureParams, FeatureType, feature_file_job, feature_file_name, get_feature
from toolkit.features.store import open_store, store_files, write_store
from toolkit.fileio import output_dir, process_alive, read_csv, relative_to_csv, resolve_from_csv, without_blanks, write_csv, write_json
from toolkit.io.audio import MAX_SECONDS, PARAMS_FILE, fingerprint, parallel_map
from toolkit.io.corpus import one_row_per, read_label_manifest
from toolkit.io.labels import CATEGORIES, check_category, classes_for, encode_labels
from toolkit.io.splits import (COPY_COLUMN, TEST_FRACTION, VAL_FRACTION, coverage_warnings, is_copy, make_splits,
                               manifest_path, split_manifest)

SPLITS = ("train", "val", "test")


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--load_csv_path", "--data_dir", default="Data/", help="folder with {category}_with_audio_path.csv (stage 1)")
    p.add_argument("--save_spec_path", default="Data/", help="feature files go to {save_spec_path}/{mel_spectrograms,egemaps,...}/")
    p.add_argument("--save_csv_path", default="Data/", help="folder for the train/val/test CSVs")
    p.add_argument("--category", default="sex", help=f"label column (stage 1's category): {', '.join(CATEGORIES)}, or yours")
    p.add_argument("--features", choices=STORED, default="mel",
                   help="what each clip becomes: 'mel' log-mel spectrogram images (the seed's; CNNs), 'egemaps' "
                        "openSMILE eGeMAPSv02 functionals (88 values; linear/mlp), 'compare' openSMILE ComParE_2016 "
                        "functionals (6,373 values; linear/mlp), 'ssl' a pretrained speech "
                        "encoder's hidden states, mean-pooled per layer (--encoder; linear/mlp)")
    p.add_argument("--sr", type=positive_int, default=FeatureParams.sr,
                   help="sample rate audio is resampled to (ssl: the encoder's own rate)")
    for name in STORED:
        FEATURES[name].add_args(p.add_argument_group(f"--features {name}"))
    p.add_argument("--split", choices=["speaker", "random"], default="speaker",
                   help="'speaker': no speaker in two splits; 'random': clips shuffled (the seed's)")
    p.add_argument("--seed", type=seed_value, default=42, help="random seed of the split")
    p.add_argument("--val_fraction", type=fraction, default=VAL_FRACTION, help="share of the clips for validation")
    p.add_argument("--test_fraction", type=fraction, default=TEST_FRACTION, help="share of the clips for the test")
    p.add_argument("--workers", type=number(int, 1, 1024), default=os.cpu_count() or 1, help="parallel processes")
    p.add_argument("--no_png", action="store_true",
                   help="no per-clip feature files (PNGs for mel, .npy for the others): only each split's packed store "
                        "({category}_{split}.store.bin + .store.json beside the CSVs), which stage 3 memory-maps; the "
                        "CSVs still name the files, as the store's index. Without it both are written")
    p.add_argument("--augmented_csv", default=None,
                   help="augmentation.py's {category}_augmented.csv: its copies of training clips get features too and "
                        "are added to the training CSV only, beside their source clips (the split of the originals "
                        "stays as without them); a copy whose source clip is not in the training part is refused")
    p.add_argument("--max_seconds", type=positive_float, default=MAX_SECONDS,
                   help="a clip longer than this is reported and left out (its header is read first: memory stays bounded)")
    return p


def feature_files(feature: FeatureType, folder: str, audio_paths: list[str], names: list[str]) -> list[str]:
    """Each clip's feature file in `folder` (feature_file_name: named after the clip and a hash of its audio)."""
    hashes = [fingerprint(a) for a in tqdm(audio_paths, desc="hashing audio", unit="clip", leave=False,
                                           disable=len(audio_paths) < 1000)]
    return [os.path.join(folder, feature_file_name(n, h, feature.storage.suffix)) for n, h in zip(names, hashes)]


def make_feature_files(feature: FeatureType, audio_paths: list[str], out_paths: list[str], workers: int, max_seconds: float = MAX_SECONDS, made: set[str] = frozenset()) -> dict[str, str]:
    """Compute the missing feature files in parallel (those in `made` are had otherwise); returns {file path: error}
    for clips that failed."""
    # only the missing files go to the workers: a re-run of a finished stage starts no processes
    jobs = [(feature, a, o, max_seconds) for a, o in zip(audio_paths, out_paths)
            if not os.path.exists(o) and o not in made]
    workers = min(feature.workers(workers), len(jobs))
    print(f"{len(audio_paths)} clips, {len(audio_paths) - len(jobs)} {feature.name} files already made, "
          f"{len(jobs)} to make with {workers} worker(s)")
    return {out: error for out, error in parallel_map(feature_file_job, jobs, workers, desc=feature.name) if error}


def packed_features(feature: FeatureType, csvs: list[str]) -> dict:
    """{feature file path: its stored values} of the complete stores beside `csvs` (current or not: a row's file
    name holds its clip's audio hash and its folder the parameters, so its values are still that file's)."""
    packed = {}
    for csv in csvs:
        store = open_store(csv, feature.name, current=False)
        for i, row in enumerate(store.rows if store else []):
            packed[os.path.abspath(resolve_from_csv(row, csv))] = (store, i)
    return packed


def scratch_folder(folder: str) -> str:
    """A new folder in `folder` for --no_png's per-clip files until they are packed (removed at the end); those a
    killed run left (named after its process) are removed first."""
    for name in os.listdir(folder):
        match = re.fullmatch(r"\.unpacked\.(\d+)\..+", name)
        if match and int(match[1]) != os.getpid() and not process_alive(int(match[1])):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f".unpacked.{os.getpid()}.", dir=folder)


def pack_split(feature: FeatureType, csv: str, scratch: str | None, packed: dict) -> None:
    """Write the split's packed store (toolkit/features/store.py) beside its CSV, unless a current one is there;
    each row's values come from its feature file, else from the scratch folder (--no_png), else an earlier store."""
    rows = read_csv(csv, [feature.column()])[feature.column()].astype(str).tolist()

    def items():
        for row in tqdm(rows, desc=f"packing {os.path.basename(csv)}", unit="clip", leave=False, disable=len(rows) < 1000):
            path = resolve_from_csv(row, csv)
            unpacked = os.path.join(scratch, os.path.basename(path)) if scratch else None
            if os.path.exists(path):
                yield feature.storage.read(path)
            elif unpacked and os.path.exists(unpacked):
                yield feature.storage.read(unpacked)
            elif os.path.abspath(path) in packed:
                store, i = packed[os.path.abspath(path)]
                yield store.item(i)
            else:
                yield feature.storage.read(path)  # a one-line error naming the missing file

    if write_store(csv, feature.name, feature.storage.dtype, rows, items, feature.to_dict()):
        print(f"packed {len(rows)} {feature.name} features into {store_files(csv)[0]}")


def check_not_overwriting_other_features(feature: FeatureType, csv: str) -> None:
    """Split CSVs of another feature type in the same folder would be replaced by these: refuse, naming the fix."""
    if not os.path.isfile(csv):
        return
    try:
        columns = read_csv(csv, []).columns
    except ToolkitError:
        return  # an empty or broken CSV: nothing worth keeping
    others = [f.name for f in FEATURES.values() if f is not type(feature) and f.column() in columns]
    if others:
        raise ToolkitError(f"{csv}: holds the {others[0]} split of this category; pass another --save_csv_path for "
                           f"--features {feature.name} (or delete those CSVs)")


def read_copies(path: str, category: str, classes: list[str], table: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    """augmentation.py's copies (audio paths made absolute), checked: labels of the class list, names of their own,
    and source clips in the training part of the split (else the copies would carry a held-out voice into training)."""
    copies = read_csv(path, [category, "Audio_file_name", "Audio_file_path", "ActorID", COPY_COLUMN])
    copies = one_row_per(without_blanks(copies, ["Audio_file_name", "Audio_file_path", COPY_COLUMN], path),
                         "Audio_file_name", path, "clip")
    encode_labels(copies, category, path, classes)
    clash = copies["Audio_file_name"].isin(set(table["Audio_file_name"]))
    if clash.any():
        raise ToolkitError(f"{path}: {int(clash.sum())} copies are named like clips of the corpus (e.g. "
                           f"{copies['Audio_file_name'][clash].iloc[0]}); pass augmentation.py's CSV")
    outside = ~copies[COPY_COLUMN].astype(str).isin(set(train["Audio_file_name"].astype(str)))
    if outside.any():
        raise ToolkitError(f"{path}: {int(outside.sum())} copies of clips outside the training part of this split (e.g. "
                           f"{copies[COPY_COLUMN][outside].iloc[0]}); re-run augmentation.py on this split's training CSV")
    copies["Audio_file_path"] = [os.path.abspath(resolve_from_csv(p, path)) for p in copies["Audio_file_path"].astype(str)]
    return copies


def with_copies(train: pd.DataFrame, copies: pd.DataFrame) -> pd.DataFrame:
    """The training part with the copies of its clips (copies of a clip that could not be used are left out)."""
    kept = copies[copies[COPY_COLUMN].astype(str).isin(set(train["Audio_file_name"].astype(str)))]
    if len(kept) < len(copies):
        print(f"note: {len(copies) - len(kept)} copies of clips that could not be used are left out")
    print(f"training part: {len(train)} clips and {len(kept)} augmented copies of them")
    return pd.concat([train, kept]).sort_values("Audio_file_name").reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.val_fraction + args.test_fraction >= 1:
        parser.error(f"--val_fraction {args.val_fraction} and --test_fraction {args.test_fraction} leave nothing to train on")
    check_category(args.category)
    params = get_feature(args.features).params_from_args(args)
    params.check("generate_mel_spectrograms.py")
    feature = get_feature(args.features)(params)
    feature.warm_up()  # also the check that needs the feature's library (e.g. empty mel bands)
    in_csv = os.path.join(args.load_csv_path, f"{args.category}_with_audio_path.csv")
    table = read_csv(in_csv, [args.category, "Audio_file_name", "Audio_file_path", "ActorID"])
    table = one_row_per(without_blanks(table, ["Audio_file_name", "Audio_file_path"], in_csv), "Audio_file_name", in_csv, "clip")
    labels = read_label_manifest(in_csv)
    classes = classes_for(args.category, table[args.category], labels.get("classes"))
    encode_labels(table, args.category, in_csv, classes)  # a label outside the class list fails now, not after the features
    split = dict(how=args.split, seed=args.seed, source=in_csv, val_fraction=args.val_fraction,
                 test_fraction=args.test_fraction)
    planned = make_splits(table, args.category, **split)  # so does too little data to split
    copies = read_copies(args.augmented_csv, args.category, classes, table, planned["train"]) if args.augmented_csv else None
    if copies is not None:  # features are made for the copies too; they join the training part after the split
        table = pd.concat([table, copies], ignore_index=True)
    output_dir(args.save_csv_path, "--save_csv_path")
    outs = {s: os.path.join(args.save_csv_path, f"{args.category}_{s}.csv") for s in SPLITS}
    for out in outs.values():
        check_not_overwriting_other_features(feature, out)
    folder = output_dir(os.path.join(args.save_spec_path, feature.folder, params.tag()), "--save_spec_path")
    write_json(params.to_dict(), os.path.join(folder, PARAMS_FILE))  # (re)written: a damaged one is repaired

    scratch = scratch_folder(folder) if args.no_png else None
    try:
        audio = [resolve_from_csv(p, in_csv) for p in table["Audio_file_path"].astype(str)]
        files = feature_files(feature, folder, audio, table["Audio_file_name"].astype(str).tolist())
        # --no_png: features are made in a scratch folder (removed at the end) or taken from the splits' earlier stores
        packed = packed_features(feature, list(outs.values())) if args.no_png else {}
        targets = [os.path.join(scratch, os.path.basename(f)) if scratch and not os.path.exists(f) else f for f in files]
        made = {t for t, f in zip(targets, files) if os.path.abspath(f) in packed}
        errors = make_feature_files(feature, audio, targets, args.workers, args.max_seconds, made)
        errors = {f: errors[t] for t, f in zip(targets, files) if t in errors}
        column = feature.column()
        table[column] = files
        failed = table[[f in errors for f in files]]
        table = table[[f not in errors for f in files]]
        failed_csv = os.path.join(args.save_csv_path, f"{args.category}_failed_clips.csv")
        if errors:
            write_csv(failed[["Audio_file_name", "ActorID", args.category]].assign(error=[errors[f] for f in failed[column]]),
                      failed_csv)
        elif os.path.isfile(failed_csv):
            os.remove(failed_csv)  # from an earlier run whose problems are fixed now
        if table.empty:
            raise ToolkitError(f"{in_csv}: no clip could be turned into {feature.name} features; the reasons are in {failed_csv}")

        splits = make_splits(table[~is_copy(table)], args.category, **split)
        if copies is not None:
            splits["train"] = with_copies(splits["train"], table[is_copy(table)])
        for name, part in splits.items():
            out = outs[name]
            part = part.assign(**{column: [relative_to_csv(p, out) for p in part[column]],
                                  "Audio_file_path": [relative_to_csv(resolve_from_csv(p, in_csv), out) for p in part["Audio_file_path"]]})
            write_csv(part, out)
            counts = ", ".join(f"{k} {v}" for k, v in part[args.category].value_counts().items())
            print(f"wrote {out}: {len(part)} clips, {part['ActorID'].nunique()} speakers ({counts})")
        for out in outs.values():
            pack_split(feature, out, scratch, packed)
        by_speaker = args.split == "speaker" and labels.get("speaker_column", "ActorID") is not None
        kind = args.split if by_speaker or args.split == "random" else "clip (no speaker column)"
        fractions = {"train": 1 - args.val_fraction - args.test_fraction, "val": args.val_fraction, "test": args.test_fraction}
        manifest = split_manifest(splits, kind, args.seed, args.category, classes, feature.name, outs, fractions)
        if copies is not None:
            manifest["augmented"] = {"csv": os.path.abspath(args.augmented_csv),
                                     "copies": int(is_copy(splits["train"]).sum())}
        write_json(manifest, manifest_path(args.save_csv_path, args.category))
        if by_speaker:
            for warning in coverage_warnings(splits, args.category):
                print(f"warning: {warning}")
        if errors:  # the summary comes last, where it is seen: which clips were left out and why
            print(f"warning: {len(errors)} clip(s) could not be used and are left out (all listed in {failed_csv}):")
            for error in list(errors.values())[:10]:
                print(f"  {error}")
            if len(errors) > 10:
                print(f"  ... and {len(errors) - 10} more")
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
