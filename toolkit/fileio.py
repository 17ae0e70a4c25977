"""Atomic writes: a file is either the old version or the complete new one, never half-written."""
from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from .errors import ToolkitError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success rename it over `path` (same filesystem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the pid in the name lets a later run tell a killed run's leftover from a live run's file (remove_stale_temps)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp" + path.suffix, dir=path.parent)
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


def load_checkpoint(path: str | os.PathLike, hint: str) -> Any:
    """torch.load a .pt file safely (weights_only: tensors and plain containers, never pickled code to run).

    A missing, truncated or foreign file is a one-line ToolkitError naming it and saying what to do (`hint`).
    """
    import torch

    if not os.path.isfile(path):
        raise ToolkitError(f"{path}: file not found; {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or not a torch file, or a pickle holding objects other than tensors
        reason = str(e).strip().splitlines()[0][:100] if str(e).strip() else type(e).__name__
        raise ToolkitError(f"{path}: not a readable checkpoint ({reason}); {hint}")


_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp(\.[^.]*)?$")  # atomic_path's temporary files


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete temporary files that a killed run (SIGKILL, power loss) left in `folder`; returns how many.

    A temporary file whose writer is still running is another live run's and is left alone.
    """
    removed = 0
    for name in os.listdir(folder):
        match = _TEMP_NAME.match(name)
        if match and int(match["pid"]) != os.getpid() and not _process_alive(int(match["pid"])):
            try:
                os.remove(os.path.join(folder, name))
                removed += 1
            except FileNotFoundError:  # another run cleaned it first
                pass
    return removed


def output_dir(path: str | os.PathLike, flag: str) -> str:
    """Create an output folder before any long work starts, so an unusable path fails at once, not at the end.

    Also sweeps the temporary files a killed run left there. `flag` is the option that named the folder.
    """
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ToolkitError(f"{path}: cannot create the output folder ({e.strerror}); pass a writable {flag}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ToolkitError(f"{path}: the output folder is not writable; fix its permissions or pass another {flag}")
    remove_stale_temps(path)
    return str(path)


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


def read_csv(path: str, required: list[str]) -> pd.DataFrame:
    """A CSV with the named columns, or a one-line error saying what is wrong with it."""
    if not os.path.isfile(path):
        raise ToolkitError(f"{path}: CSV not found; check the folder and file name flags (run the earlier stage first?)")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ToolkitError(f"{path}: the CSV is empty; re-run the stage that writes it")
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ToolkitError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})")
    require_columns(df, required, path)
    if df.empty:
        raise ToolkitError(f"{path}: the CSV has no rows; re-run the stage that writes it with more data")
    return df


def require_columns(df: pd.DataFrame, required: list[str], source: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ToolkitError(f"{source}: missing column(s) {missing}; found {list(df.columns)}")
