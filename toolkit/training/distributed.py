"""Data-parallel training under torchrun: one process per device (or per group of CPU cores), one model replica each.

A stage launched by `torchrun --nproc_per_node=N` (RANK, WORLD_SIZE and LOCAL_RANK in the environment, N > 1) joins
the process group in `session` (gloo on the CPU, nccl on CUDA, each rank on cuda:LOCAL_RANK). Then the engine wraps
the network in DistributedDataParallel (`wrap`), every rank shuffles the training split with the same generator and
takes its own deterministic share of that order (`shard`: torch's DistributedSampler, padded by repeating
the first items so that every rank runs the same number of equal batches and the generators stay in step), and the
epoch's training loss is summed over the ranks (`all_sum`). Every rank evaluates the whole validation split (the
weights are the same on all), so all take the same best-epoch and early-stopping decisions; only rank 0 writes files
and prints. Outside torchrun (or with one process) every function here is a no-op: single-process runs are unchanged.
"""
from __future__ import annotations

import datetime
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from toolkit.errors import ToolkitError
from toolkit.lazy import torch  # imported when first used: --help needs no torch

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
RENDEZVOUS = ("MASTER_ADDR", "MASTER_PORT")  # where the ranks meet (torchrun sets them too)


def launched() -> bool:
    """Started by torchrun with more than one process (its environment checked: one line when it is broken)."""
    if not all(k in os.environ for k in ENV):
        return False
    values = {k: os.environ[k] for k in ENV + ("MASTER_PORT",) if k in os.environ}
    bad = [f"{k}={v!r}" for k, v in values.items() if not v.strip().isdigit()]
    if bad:
        raise ToolkitError(f"{', '.join(bad)}: not a whole number; these are set by torchrun: launch with "
                           f"`torchrun --nproc_per_node=N script.py ...`, or unset {', '.join(ENV)} for one process")
    if int(values["WORLD_SIZE"]) <= 1:
        return False
    if not int(values["RANK"]) < int(values["WORLD_SIZE"]):
        raise ToolkitError(f"RANK={values['RANK']} is not below WORLD_SIZE={values['WORLD_SIZE']}; launch with torchrun")
    missing = [k for k in RENDEZVOUS if not os.environ.get(k)]
    if missing:
        raise ToolkitError(f"{', '.join(missing)} not set: WORLD_SIZE={values['WORLD_SIZE']} asks for several processes, "
                           f"which meet at MASTER_ADDR:MASTER_PORT; launch with torchrun (it sets them), or unset "
                           f"{', '.join(ENV)} for one process")
    return True


def active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if active() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


@contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """Join the process group when launched by torchrun (yields this rank's device); barrier and leave at the end."""
    if not launched() or active():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                         timeout=datetime.timedelta(minutes=30))
    stdout = sys.stdout
    if not is_main():  # one rank reports: the others' progress lines would only repeat it
        sys.stdout = open(os.devnull, "w")
    try:
        yield device
        torch.distributed.barrier()  # only when this rank succeeded: a failed one leaves at once, and the others fail too
    except BaseException as e:
        if peer_left(e):  # the rank that failed first says why in its own line; this one only follows it
            raise ToolkitError(f"rank {rank()}: another process of this torchrun run stopped (its error says why), so "
                               f"this one stops too") from None
        raise
    finally:
        torch.distributed.destroy_process_group()
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout


def peer_left(e: BaseException) -> bool:
    """A collective (all-reduce, barrier) that failed because another rank's process ended: nccl's DistBackendError,
    or gloo's RuntimeError about its closed connection."""
    return isinstance(e, torch.distributed.DistError) or (
        isinstance(e, RuntimeError) and any(s in str(e) for s in ("closed by peer", "reset by peer", "Broken pipe")))


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model as DistributedDataParallel when in a process group (gradients averaged over the ranks)."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard(order: torch.Tensor) -> torch.Tensor:
    """This rank's share of an epoch's order (the same order on every rank): torch's DistributedSampler over the
    order's positions, unshuffled (the order is already the epoch's shuffle): padded with its first items to a
    multiple of world_size, then every world_size-th item from this rank's."""
    if not active():
        return order
    from torch.utils.data import DistributedSampler

    positions = DistributedSampler(range(len(order)), num_replicas=world_size(), rank=rank(), shuffle=False)
    return order[list(positions)]


def share_size(n: int) -> int:
    """How many of n items shard gives each rank."""
    return -(-n // world_size()) if active() else n


def all_sum(*values: torch.Tensor) -> list[torch.Tensor]:
    """The values summed over the ranks (unchanged outside a process group)."""
    if not active():
        return list(values)
    out = []
    for v in values:
        v = v.clone()
        torch.distributed.all_reduce(v)
        out.append(v)
    return out
