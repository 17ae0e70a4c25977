"""Sharded runs of stage 2 and predict.py: which clips a process takes, and the parts it leaves for the merge.

A run of N processes (the ranks of `torchrun --nnodes M --nproc_per_node G`, or the tasks of a Slurm array with
`--shard i/N`) splits its clips deterministically: the distinct keys (a clip's absolute path, or its speaker where
a speaker's clips must stay together) are sorted, and shard i takes every N-th key from the i-th. Each shard writes
its results as one part (a JSON file, written last and atomically, plus any data file it names); the merge (rank 0
after a barrier, or a later `--merge_shards` run with the same flags) reads all N parts and writes exactly the files
a one-process run writes. A part names the job it belongs to (a digest of the clips and the settings), so a part of
another run is never merged.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from typing import Callable, Sequence

from toolkit.errors import ToolkitError
from toolkit.fileio import read_json, write_json


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based: `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT` with --array=0-...)."""

    index: int = 0
    count: int = 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, items: Sequence[str], key: Callable[[str], str] | None = None) -> list[int]:
        """The positions (in `items`' own order) of this shard's items: the sorted distinct keys, every count-th
        from the index-th; all items of one key go to one shard."""
        keys = [key(item) if key else os.path.abspath(item) for item in items]
        mine = set(sorted(set(keys))[self.index :: self.count])
        return [i for i, k in enumerate(keys) if k in mine]

    def part_name(self) -> str:
        return f"part-{self.index}-of-{self.count}"


def shard_value(text: str) -> Shard:
    """An argparse type for --shard i/N (0 <= i < N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not int(match[1]) < int(match[2]) <= 100_000:
        raise argparse.ArgumentTypeError(f"{text!r}: use i/N with 0 <= i < N, e.g. 0/4 for the first of 4 shards "
                                         f"(Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=0-3)")
    return Shard(int(match[1]), int(match[2]))


def add_shard_flags(p: argparse.ArgumentParser) -> None:
    """--shard and --merge_shards, for the stages that can run as several jobs (a Slurm array)."""
    p.add_argument("--shard", type=shard_value, default=None, metavar="i/N",
                   help="do only shard i of N (0-based; the clips split by sorted path) and leave its part for "
                        "--merge_shards; for a job array. Under torchrun the ranks share the work by themselves")
    p.add_argument("--merge_shards", type=positive_count, default=None, metavar="N",
                   help="join the parts of the N finished --shard i/N runs (same other flags) into the files one "
                        "process writes")


def check_shard_flags(args: argparse.Namespace, under_torchrun: bool, items: str) -> None:
    """A one-line ToolkitError for --shard/--merge_shards given together, or under torchrun."""
    if args.shard and args.merge_shards:
        raise ToolkitError(f"--shard {args.shard} --merge_shards {args.merge_shards}: run each shard first, then one "
                           f"--merge_shards run (without --shard)")
    if under_torchrun and (args.shard or args.merge_shards):
        raise ToolkitError(f"--shard/--merge_shards: not under torchrun, whose ranks share the {items} by themselves; "
                           f"drop them, or run the shards as separate jobs without torchrun")


def positive_count(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 100_000:
        raise argparse.ArgumentTypeError(f"{text!r}: the number of shards, a whole number from 1")
    return int(text)


def job_digest(*parts) -> str:
    """A short digest of what defines a sharded job (its clips and settings): the parts of one job share it."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def write_part(folder: str, shard: Shard, job: str, content: dict) -> str:
    """Shard's part in `folder` (written atomically, after any data file it names); returns its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{shard.part_name()}.json")
    write_json({"job": job, "shard": [shard.index, shard.count], **content}, path)
    return path


def leave_part(folder: str, shard: Shard, job: str, content: dict, under_torchrun: bool) -> bool:
    """Write this shard's part; True when this process goes on to merge the parts: rank 0, after the barrier that
    every rank reaches once its part is written (a --shard job merges nothing: the later --merge_shards run does)."""
    write_part(folder, shard, job, content)
    if not under_torchrun:
        print(f"shard {shard} done; when all {shard.count} are, run the same command with --merge_shards "
              f"{shard.count} (instead of --shard)")
        return False
    import torch.distributed

    torch.distributed.barrier()
    return torch.distributed.get_rank() == 0


def read_parts(folder: str, count: int, job: str, rerun: str) -> list[dict]:
    """The `count` parts of `job` in `folder`, in shard order; a missing or foreign one is a one-line error that
    names the shard to (re-)run (`rerun`: how, e.g. 'generate_mel_spectrograms.py ... --shard')."""
    parts = []
    for i in range(count):
        path = os.path.join(folder, f"{Shard(i, count).part_name()}.json")
        if not os.path.isfile(path):
            raise ToolkitError(f"{path}: shard {i}/{count} has not finished; run {rerun} {i}/{count} with the same "
                               f"flags first")
        part = read_json(path, "shard part", f"re-run {rerun} {i}/{count}")
        if not isinstance(part, dict) or part.get("job") != job or part.get("shard") != [i, count]:
            raise ToolkitError(f"{path}: a part of another run (other clips or flags); re-run {rerun} {i}/{count} "
                               f"with the same flags as this merge")
        parts.append(part)
    return parts


def remove_parts(folder: str) -> None:
    """A merged job's parts, and the folder of all parts once no other job's are left in it."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(folder))
    except OSError:  # another job's parts are still there
        pass
