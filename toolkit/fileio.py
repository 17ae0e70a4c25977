"""Atomic writes: a file is either the old version or the complete new one, never half-written."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success rename it over `path` (same filesystem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default)
            f.write("\n")


def write_torch(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy arrays and scalars
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def relative_to_csv(path: str | os.PathLike, csv_path: str | os.PathLike) -> str:
    """How a file path is stored in a CSV: relative to the CSV's folder, so Data/ can move as a whole."""
    return os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.abspath(csv_path)))


def resolve_from_csv(path: str, csv_path: str | os.PathLike) -> str:
    """Inverse of relative_to_csv; a relative path that is not under the CSV's folder is taken from the cwd."""
    if os.path.isabs(path):
        return path
    beside_csv = os.path.join(os.path.dirname(os.path.abspath(csv_path)), path)
    return beside_csv if os.path.exists(beside_csv) or not os.path.exists(path) else path
