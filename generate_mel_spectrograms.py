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
the stores: the workers' results are appended to one rows file as they come (no per-clip file, not even a scratch
one) and the split's stores are packed from it.

Scale-out (toolkit/io/shards.py): under `torchrun --nnodes M --nproc_per_node G generate_mel_spectrograms.py ...`
each rank makes the features of its share of the clips (split by sorted audio path; with --features ssl on its own
GPU), and after a barrier rank 0 joins the shares into exactly the files one process writes. As separate jobs (a
Slurm array): `--shard i/N` for i = 0..N-1, then one run with `--merge_shards N` and the same flags. The feature
folder must be on a file system every process sees.
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

from toolkit.cli import Parser, answer_help, run_main
from toolkit.config import fraction, number, positive_float, positive_int, seed_value
from toolkit.errors import ToolkitError
from toolkit.features import (CLIP_ID, FEATURES, STORED, FeatureParams, FeatureType, feature_file_job, feature_file_name,
                              features_table_path, get_feature)
from toolkit.features.base import feature_job
from toolkit.features.store import RowWriter, Store, open_store, store_files, write_store
from toolkit.fileio import (atomic_path, output_dir, process_alive, read_csv, relative_to_csv, resolve_from_csv,
                            without_blanks, write_csv, write_json)
from toolkit.io.audio import MAX_SECONDS, PARAMS_FILE, fingerprint, parallel_map
from toolkit.io.shards import Shard, add_shard_flags, check_shard_flags, job_digest, leave_part, read_parts, remove_parts
from toolkit.io.corpus import one_row_per, read_label_manifest
from toolkit.io.labels import CATEGORIES, check_category, classes_for, encode_labels
from toolkit.io.splits import (COPY_COLUMN, TEST_FRACTION, VAL_FRACTION, coverage_warnings, is_copy, make_splits,
                               manifest_path, split_manifest)
from toolkit.training import distributed

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
                        "encoder's hidden states, mean-pooled per layer (--encoder; linear/mlp), 'fbank' Kaldi-style log "
                        "mel filterbank images (CNNs)")
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
    add_shard_flags(p)
    return p


if __name__ == "__main__":
    answer_help(get_args_parser)  # --help answers before the slow imports below

import torch


def feature_files(feature: FeatureType, folder: str, audio_paths: list[str], names: list[str]) -> list[str]:
    """Each clip's feature file in `folder` (feature_file_name: named after the clip and a hash of its audio)."""
    hashes = [fingerprint(a) for a in tqdm(audio_paths, desc="hashing audio", unit="clip", leave=False,
                                           disable=len(audio_paths) < 1000)]
    return [os.path.join(folder, feature_file_name(n, h, feature.storage.suffix)) for n, h in zip(names, hashes)]


def make_feature_files(feature: FeatureType, audio_paths: list[str], out_paths: list[str], workers: int,
                       max_seconds: float = MAX_SECONDS, made: set[str] = frozenset(),
                       rows: RowWriter | None = None) -> dict[str, str]:
    """Compute the missing features in parallel (those whose file exists or is in `made` are had otherwise): each
    into its file, or with `rows` appended to those rows as the workers return them (named by their file's absolute
    path; no file written). Returns {file path: error} for clips that failed."""
    # only the missing files go to the workers: a re-run of a finished stage starts no processes
    todo = [(a, o) for a, o in zip(audio_paths, out_paths) if not os.path.exists(o) and os.path.abspath(o) not in made]
    workers = min(feature.workers(workers), len(todo))
    print(f"{len(audio_paths)} clips, {len(audio_paths) - len(todo)} {feature.name} files already made, "
          f"{len(todo)} to make with {workers} worker(s)")
    if rows is None:
        jobs = [(feature, a, o, max_seconds) for a, o in todo]
        return {out: error for out, error in parallel_map(feature_file_job, jobs, workers, desc=feature.name) if error}
    errors = {}
    jobs = [(feature, a, max_seconds) for a, _ in todo]
    for (_, out), (value, error) in zip(todo, parallel_map(feature_job, jobs, workers, desc=feature.name)):
        if error:
            errors[out] = error
        else:
            rows.add(os.path.abspath(out), value)
    return errors


def make_share(feature: FeatureType, audio: list[str], names: list[str], folder: str, args, shard: Shard,
               part_folder: str | None, packed: dict) -> dict:
    """This process's share of the clips (all of them in a one-process run): their feature files' names and their
    features, as per-clip files or (--no_png, `part_folder` given) as rows of {part_folder}/{part}.bin. Returns the
    part: the positions of its clips in the table, their files, the errors, and the rows' index."""
    positions = shard.take(audio)
    mine = [audio[i] for i in positions]
    files = feature_files(feature, folder, mine, [names[i] for i in positions])
    part = {"positions": positions, "files": files}
    if not args.no_png:
        part["errors"] = make_feature_files(feature, mine, files, args.workers, args.max_seconds)
        return part
    part["data"] = f"{shard.part_name()}.bin"
    with atomic_path(os.path.join(part_folder, part["data"])) as tmp, open(tmp, "wb") as f:
        rows = RowWriter(f, feature.storage.dtype)
        part["errors"] = make_feature_files(feature, mine, files, args.workers, args.max_seconds, set(packed), rows)
        rows.finish(durable=shard.count > 1)  # one process: a scratch file, packed into the stores below and deleted
    part["rows"] = rows.index()
    return part


def join_parts(parts: list[dict], part_folder: str | None, clips: int) -> tuple[list[str], dict[str, str], dict]:
    """The shares' results in table order: every clip's feature file, {file: error} and {absolute file: (Store,
    row)} of the features made as rows (--no_png)."""
    files, errors, rows = [""] * clips, {}, {}
    for part in parts:
        for position, file in zip(part["positions"], part["files"]):
            files[position] = file
        errors.update(part["errors"])
        if part.get("rows", {}).get("rows"):  # (a re-run that found every feature made made no rows)
            store = Store(part["rows"], os.path.join(part_folder, part["data"]))
            rows.update({name: (store, i) for i, name in enumerate(store.rows)})
    return files, {f: errors[f] for f in files if f in errors}, rows


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
    """A new folder in `folder` for a one-process --no_png run's rows until they are packed (removed at the end);
    those a killed run left (named after its process) are removed first."""
    for name in os.listdir(folder):
        match = re.fullmatch(r"\.unpacked\.(\d+)\..+", name)
        if match and int(match[1]) != os.getpid() and not process_alive(int(match[1])):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f".unpacked.{os.getpid()}.", dir=folder)


def pack_split(feature: FeatureType, csv: str, packed: dict) -> None:
    """Write the split's packed store (toolkit/features/store.py) beside its CSV, unless a current one is there;
    each row's values come from its feature file, else from rows made by this run or an earlier store (`packed`)."""
    rows = read_csv(csv, [feature.column()])[feature.column()].astype(str).tolist()

    def items():
        for row in tqdm(rows, desc=f"packing {os.path.basename(csv)}", unit="clip", leave=False, disable=len(rows) < 1000):
            path = resolve_from_csv(row, csv)
            if os.path.exists(path):
                yield feature.storage.read(path)
            elif os.path.abspath(path) in packed:
                store, i = packed[os.path.abspath(path)]
                yield store.item(i)
            else:
                yield feature.storage.read(path)  # a one-line error naming the missing file

    if write_store(csv, feature.name, feature.storage.dtype, rows, items, feature.to_dict()):
        print(f"packed {len(rows)} {feature.name} features into {store_files(csv)[0]}")


def joins_existing_split(feature: FeatureType, outs: dict[str, str]) -> bool:
    """True when the folder holds this category's split made with another feature type: this type's features are then
    written as tables beside it (write_features_table), never over it. Part of such a split is refused."""
    others = {}
    for csv in outs.values():
        try:
            columns = read_csv(csv, []).columns if os.path.isfile(csv) else []
        except ToolkitError:
            columns = []  # an empty or broken CSV: nothing worth keeping
        others[csv] = next((f.name for f in FEATURES.values() if f is not type(feature) and f.column() in columns), None)
    if any(others.values()) and not all(others.values()):
        csv, other = next((c, o) for c, o in others.items() if o)
        raise ToolkitError(f"{csv}: holds the {other} split of this category, but not all three parts are there; pass "
                           f"another --save_csv_path for --features {feature.name} (or delete those CSVs)")
    return all(others.values())


def write_features_table(feature: FeatureType, split_csv: str, table: pd.DataFrame) -> str:
    """This type's feature files for the clips of `split_csv` (a split made with another type): {stem}.{feature}.csv
    beside it, one row per clip (Audio_file_name, the file column), which stage 3's --features joins on clip id."""
    column, path = feature.column(), features_table_path(split_csv, feature.name)
    made = dict(zip(table[CLIP_ID].astype(str), table[column]))
    clips = read_csv(split_csv, [CLIP_ID])[CLIP_ID].astype(str)
    rows = pd.DataFrame({CLIP_ID: [c for c in clips if c in made]})
    write_csv(rows.assign(**{column: [relative_to_csv(made[c], path) for c in rows[CLIP_ID]]}), path)
    print(f"wrote {path}: {feature.name} features of {len(rows)} of the {len(clips)} clips of {split_csv}")
    return path


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
    # augmentation.py writes its CSV after every copy: a missing one is a moved or hand-joined CSV, not a bad clip
    missing = ~copies["Audio_file_path"].map(os.path.isfile)
    if missing.any():
        raise ToolkitError(f"{path}: the audio of {int(missing.sum())} of {len(copies)} copies is missing (e.g. "
                           f"{copies['Audio_file_path'][missing].iloc[0]}); relative paths are read from the CSV's own "
                           f"folder: keep it beside its copies, make the paths absolute, or re-run augmentation.py")
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
    check_shard_flags(args, distributed.launched(), "clips")
    # a rank that runs an encoder takes its own GPU (cuda:LOCAL_RANK); the others need only the CPU group's barrier
    on_gpu = args.features == "ssl" and torch.cuda.is_available()
    with distributed.session(torch.device("cuda" if on_gpu else "cpu")):
        run(parser, args)


def run(parser: Parser, args) -> None:
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
    joined = joins_existing_split(feature, outs)
    folder = output_dir(os.path.join(args.save_spec_path, feature.folder, params.tag()), "--save_spec_path")
    write_json(params.to_dict(), os.path.join(folder, PARAMS_FILE))  # (re)written: a damaged one is repaired

    audio = [resolve_from_csv(p, in_csv) for p in table["Audio_file_path"].astype(str)]
    names = table["Audio_file_name"].astype(str).tolist()
    ranks = distributed.active()
    if ranks:  # every rank's output_dir sweep is over before any rank writes a temporary file there
        torch.distributed.barrier()
    shard = Shard(distributed.rank(), distributed.world_size()) if ranks else args.shard or Shard()
    count = args.merge_shards or shard.count
    job = job_digest(feature.name, params.to_dict(), audio, names, args.no_png, args.max_seconds)
    # --no_png: earlier stores of the splits supply the features they hold (a re-run makes only what is missing)
    stores_beside = [features_table_path(o, feature.name) if joined else o for o in outs.values()]
    packed = packed_features(feature, stores_beside) if args.no_png else {}
    part_folder = scratch = scratch_folder(folder) if args.no_png and count == 1 else None
    try:
        if count == 1:
            parts = [make_share(feature, audio, names, folder, args, shard, part_folder, packed)]
        else:  # the parts of several processes wait in a folder all of them see, until the merge
            part_folder = os.path.join(folder, ".shards", job)
            if not args.merge_shards:
                os.makedirs(part_folder, exist_ok=True)
                part = make_share(feature, audio, names, folder, args, shard, part_folder, packed)
                if not leave_part(part_folder, shard, job, part, ranks):
                    return
            parts = read_parts(part_folder, count, job, "generate_mel_spectrograms.py --shard")
        files, errors, rows = join_parts(parts, part_folder, len(audio))
        packed.update(rows)
        column = feature.column()
        table[column] = files
        failed = table[[f in errors for f in files]]
        table = table[[f not in errors for f in files]]
        failed_csv = os.path.join(args.save_csv_path, f"{args.category}_failed_clips{'.' + feature.name if joined else ''}.csv")
        if errors:
            write_csv(failed[["Audio_file_name", "ActorID", args.category]].assign(error=[errors[f] for f in failed[column]]),
                      failed_csv)
        elif os.path.isfile(failed_csv):
            os.remove(failed_csv)  # from an earlier run whose problems are fixed now
        if table.empty:
            raise ToolkitError(f"{in_csv}: no clip could be turned into {feature.name} features; the reasons are in {failed_csv}")

        if joined:  # the split in the folder (made with another feature type) stays as it is
            print(f"{args.save_csv_path} holds this split already: adding {feature.name} features to it")
            for out in outs.values():
                pack_split(feature, write_features_table(feature, out, table), packed)
            return
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
            pack_split(feature, out, packed)
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
        if count > 1:
            remove_parts(part_folder)  # merged: the stores and CSVs hold everything now
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
