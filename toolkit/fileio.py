"""Files in and out. Atomic writes: a file is either the old version or the complete new one, never half-written;
a write that fails (full disk) is an OutputError naming the file. Reads take regular files only (a FIFO would hang,
a device would never end) of a sane size, and say in one line what is wrong with anything else."""
from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from toolkit.errors import OutputError, ToolkitError

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp makes 0600 files, and outputs are shared data (the mode a plain open() gives)
MAX_TEXT_BYTES = 1 << 30  # a CSV or JSON larger than this is not one of ours (and would fill the memory)
SNIFF_BYTES = 1 << 16  # what text_file looks at before a parser reads a file


def output_failure(path: str | os.PathLike, reason: str) -> OutputError:
    return OutputError(f"{path}: cannot write it ({reason}); free disk space or pass a writable output folder")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside `path`; on success rename it over `path` (same filesystem).

    An OSError while writing (no space, permission lost) becomes an OutputError naming `path`, not the temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the pid in the name lets a later run tell a killed run's leftover from a live run's file (remove_stale_temps)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise output_failure(path, e.strerror or type(e).__name__)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as e:
        raise output_failure(path, e.strerror or str(e))
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
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch's writer reports a full disk as "PytorchStreamWriter failed writing file"
            raise output_failure(path, str(e).strip().splitlines()[-1][:80])


def load_checkpoint(path: str | os.PathLike, hint: str) -> Any:
    """torch.load a .pt file safely (weights_only: tensors and plain containers, never pickled code to run).

    A missing, truncated or foreign file is a one-line ToolkitError naming it and saying what to do (`hint`).
    """
    import torch

    regular_file(path, "checkpoint", hint)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or not a torch file, or a pickle holding objects other than tensors
        raise ToolkitError(f"{path}: not a readable checkpoint ({reason_of(e)}); {hint}")


def reason_of(e: Exception, limit: int = 100) -> str:
    """An exception's first line, cut at a word boundary and without terminal escapes (for one-line errors)."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(e)).strip().splitlines()
    text = text[0] if text else type(e).__name__
    return text if len(text) <= limit else text[: limit + 1].rsplit(" ", 1)[0] + " ..."


def regular_file(path: str | os.PathLike, what: str, hint: str, max_bytes: int | None = None) -> None:
    """A one-line ToolkitError unless `path` is an existing regular file (of at most max_bytes)."""
    if not os.path.exists(path):
        raise ToolkitError(f"{path}: {what} not found; {hint}")
    if not os.path.isfile(path):
        kind = "a folder" if os.path.isdir(path) else "not a regular file (a pipe, device or socket)"
        raise ToolkitError(f"{path}: is {kind}, not a {what}; {hint}")
    if max_bytes is not None and os.path.getsize(path) > max_bytes:
        raise ToolkitError(f"{path}: {os.path.getsize(path) / 2**20:.0f} MB is far too large for a {what}; {hint}")


def text_file(path: str | os.PathLike, what: str, hint: str) -> None:
    """regular_file for a CSV or JSON, of at most MAX_TEXT_BYTES, whose first block is sniffed before any parser
    reads it: NUL bytes or bytes that are not UTF-8 text mean a binary file (a sparse file of zeros, an image, a .pt),
    which a parser would read into memory whole before failing."""
    regular_file(path, what, hint, MAX_TEXT_BYTES)
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    why = "NUL bytes: binary data" if b"\0" in head else None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # (a character cut by the block's end is not an error)
            why = why or "bytes that are not UTF-8 text (save it as UTF-8)"
    if why:
        raise ToolkitError(f"{path}: {why} in its first {len(head)} bytes, not a {what}; {hint}")


_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp(\.[^.]*)?$")  # atomic_path's temporary files


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


@contextmanager
def exclusive_lock(path: str, what: str) -> Iterator[None]:
    """Hold the lock file `path` while this process writes `what`; another process asking for it meanwhile gets a
    one-line ToolkitError at once. The lock is the kernel's (flock), not the file's existence: it is taken in one step
    (no window between creating the file and writing the PID in which a second run could also pass), and it is
    released when the holder dies, so a killed run's file is simply taken over. The file holds the holder's PID,
    for the message only, and is removed on release."""
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise ToolkitError(f"{path}: another run (process {holder if holder.isdigit() else 'starting up'}) is "
                               f"writing {what}; wait for it to finish, or pass another output folder")
        try:
            current = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # its holder removed it between our open and our lock: lock the file that is there now
    else:
        raise ToolkitError(f"{path}: cannot take the lock file; delete it if no run is writing {what}")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        try:
            os.remove(path)  # while still holding it (see the inode check above)
        except FileNotFoundError:
            pass
        os.close(fd)


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete temporary files that a killed run (SIGKILL, power loss) left in `folder`; returns how many.

    A temporary file whose writer is still running is another live run's and is left alone.
    """
    removed = 0
    for name in os.listdir(folder):
        match = _TEMP_NAME.match(name)
        if match and int(match["pid"]) != os.getpid() and not process_alive(int(match["pid"])):
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


def read_json(path: str | os.PathLike, what: str = "JSON file", hint: str = "restore it or re-run the stage that wrote it") -> Any:
    """A JSON file's content; a missing, oversized or unparsable file is a one-line error naming it."""
    text_file(path, what, hint)
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ToolkitError(f"{path}: not valid JSON ({reason_of(e)}); {hint}")


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


def read_csv(path: str, required: list[str], flags: dict[str, str] | None = None) -> pd.DataFrame:
    """A CSV with the named columns, or a one-line error saying what is wrong with it (and, for a column a flag
    named, which flag: `flags` maps column -> flag). Every cell is read as text (blank: NaN): labels and speaker IDs
    are names, so a class '01' stays '01' (not 1, the same as a class '1') and a speaker '1002' does not become
    '1002.0' because another row is blank; a stage converts what it needs as a number."""
    text_file(path, "CSV", "check the folder and file name flags (run the earlier stage first?)")
    try:
        df = pd.read_csv(path, dtype=str)
    except pd.errors.EmptyDataError:
        raise ToolkitError(f"{path}: the CSV is empty; re-run the stage that writes it")
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ToolkitError(f"{path}: not a readable CSV ({reason_of(e)})")
    require_columns(df, required, path, flags)
    if df.empty:
        raise ToolkitError(f"{path}: the CSV has no rows; re-run the stage that writes it with more data")
    return df


def without_blanks(df: pd.DataFrame, columns: list[str], source: str) -> pd.DataFrame:
    """The rows with a value in every one of `columns`; the others are reported (a warning) and left out."""
    blank = df[columns].isna().any(axis=1) | df[columns].astype(str).apply(lambda c: c.str.strip() == "").any(axis=1)
    if blank.any():
        print(f"warning: {int(blank.sum())} row(s) of {source} have no {' / '.join(columns)} and are left out "
              f"(e.g. line {int(blank.idxmax()) + 2})")
    return df[~blank].reset_index(drop=True)


def require_columns(df: pd.DataFrame, required: list[str], source: str, flags: dict[str, str] | None = None) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        named = [f"{flags[c]} {c}" for c in missing if c in (flags or {})]
        which = f" ({', '.join(named)})" if named else ""
        fix = ": give the right column's name with that flag" if named else ""
        raise ToolkitError(f"{source}: missing column(s) {missing}{which}; found {list(df.columns)}{fix}")
