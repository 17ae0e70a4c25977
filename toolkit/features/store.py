"""The packed feature store: one split's stored features in one file, memory-mapped by stage 3.

Stage 2 writes, beside each split CSV {stem}.csv, {stem}.store.bin (every row's feature, as its type stores it, one
after the other in C order, in the feature storage's dtype) and {stem}.store.json (the index: the CSV's file
column in order, each item's shape and checksum, the dtype, the feature type and the SHA-1 of the CSV it matches). The data file
is written to a temporary file and renamed, and the index is written last (also renamed into place): a store without
an index, or whose index does not match the CSV now beside it, is not used (stage 3 reads the per-clip files
instead), so an interrupted or stale store is never read.

Stage 3 (toolkit.training.data.load_split) opens a current store as a read-only np.memmap; FeatureSet.x is then a StoreRows,
which makes a batch's network inputs from the mapped bytes when indexed (FeatureType.stack on just those rows), so
only the pages a batch touches are read and no copy of the split is made. Each row's checksum (CRC-32 of its name,
dtype, shape and bytes) is checked the first time the row is read: an index that lies about the dtype, a shape or
the order of the rows, or a data file changed after stage 2, stops training with one line instead of training on
the wrong features.
"""
from __future__ import annotations

import hashlib
import os
import zlib
from typing import Callable, Iterable

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.fileio import atomic_path, read_json, write_json
from toolkit.lazy import torch  # imported when first used: --help and the registry need no torch
from toolkit.schemas import StoreIndex, check

STORE_VERSION = 2  # 2: rows carry checksums (a version-1 store is not used: stage 3 reads the per-clip files)


def store_files(csv_path: str | os.PathLike) -> tuple[str, str]:
    """(data file, index file) of the store beside a split CSV."""
    stem = os.path.splitext(str(csv_path))[0]
    return f"{stem}.store.bin", f"{stem}.store.json"


def file_sha1(path: str | os.PathLike) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def row_checksum(name: str, value: np.ndarray) -> int:
    """CRC-32 of a stored row: its name, dtype and shape as well as its bytes, so that none of them can change unseen."""
    head = f"{name}\0{value.dtype.str}\0{list(value.shape)}".encode()
    return zlib.crc32(memoryview(np.ascontiguousarray(value)).cast("B"), zlib.crc32(head))


class Store:
    """An opened store: its index and the read-only mapping of its data."""

    def __init__(self, index: dict, data_path: str, index_path: str = "") -> None:
        self.index, self.index_path = index, index_path
        self.rows: list[str] = index["rows"]
        self.checksums = index["checksums"]
        self.verified = np.zeros(len(self.rows), bool)
        self.shapes = np.asarray(index["shapes"], dtype=np.int64).reshape(len(self.rows), -1)  # (items, ndim)
        self.offsets = np.concatenate([[0], np.cumsum(self.shapes.prod(1))])
        self.dtype = np.dtype(index["dtype"])
        if self.dtype.kind not in "uif" or (self.shapes < 0).any():  # an index from elsewhere: numbers only
            raise ValueError("the index names a dtype or shape no feature type stores")
        total = int(self.offsets[-1])
        if os.path.getsize(data_path) != total * self.dtype.itemsize:
            raise ValueError("the data file is not as long as the index says")
        self.data = np.memmap(data_path, dtype=self.dtype, mode="r", shape=(total,)) if total else np.zeros(0, self.dtype)

    def __len__(self) -> int:
        return len(self.rows)

    def item(self, i: int) -> np.ndarray:
        """Row i as its type stored it (a read-only view of the mapping), its checksum checked on the first read."""
        value = self.data[self.offsets[i] : self.offsets[i + 1]].reshape(tuple(self.shapes[i]))
        if not self.verified[i]:
            if row_checksum(self.rows[i], value) != self.checksums[i]:
                raise ToolkitError(f"{self.index_path}: row {i} ({self.rows[i]}) does not match its checksum: the store "
                                   f"was changed after stage 2 wrote it; delete it and its .store.bin (stage 3 then "
                                   f"reads the per-clip files) or re-run generate_mel_spectrograms.py")
            self.verified[i] = True
        return value


def open_store(csv_path: str | os.PathLike, feature_name: str | None = None, current: bool = True) -> Store | None:
    """The store beside `csv_path`, or None when there is none, it is incomplete, of another feature type, or (with
    `current`) made for other CSV content than the file there now."""
    data_path, index_path = store_files(csv_path)
    if not (os.path.isfile(index_path) and os.path.isfile(data_path)):
        return None
    try:
        index = check(StoreIndex, read_json(index_path, "feature store index"), index_path, "store index", "").model_dump()
    except ToolkitError:  # damaged, or of another version: not used, the per-clip files are read
        return None
    if index["version"] != STORE_VERSION or feature_name is not None and index["feature"] != feature_name:
        return None
    if not len(index["shapes"]) == len(index["rows"]) == len(index["checksums"]):
        return None
    try:
        if current and index["csv_sha1"] != file_sha1(csv_path):
            return None
        return Store(index, data_path, index_path)
    except (KeyError, TypeError, ValueError, OSError):
        return None


def write_store(csv_path: str, feature_name: str, dtype: str, rows: list[str],
                items: Callable[[], Iterable[np.ndarray]], params: dict | None = None) -> bool:
    """Pack `items()` (the features of `rows`, the CSV's file column, in order) beside `csv_path`; False (nothing
    written) when a current store of the same rows is already there. An exception while reading the items leaves
    the previous store's index removed and no new one: stage 3 then reads the per-clip files."""
    existing = open_store(csv_path, feature_name)
    if existing is not None and existing.rows == rows and existing.index["dtype"] == dtype:
        return False
    data_path, index_path = store_files(csv_path)
    if os.path.exists(index_path):
        os.remove(index_path)  # first: a run stopped below leaves no index, so no store that looks complete
    with atomic_path(data_path) as tmp, open(tmp, "wb") as f:
        writer = RowWriter(f, dtype)
        for i, value in enumerate(items()):
            writer.add(rows[i] if i < len(rows) else "", value)
        writer.finish()
    if len(writer.rows) != len(rows):
        raise ToolkitError(f"{csv_path}: packed {len(writer.rows)} features for {len(rows)} rows")
    write_json({"version": STORE_VERSION, "feature": feature_name, "dtype": dtype, "csv": os.path.basename(csv_path),
                "csv_sha1": file_sha1(csv_path), "params": params or {}, "rows": rows, "shapes": writer.shapes,
                "checksums": writer.checksums}, index_path)
    return True


class RowWriter:
    """Appends rows (arrays of one dtype) to an open binary file in the store's layout, keeping what its index
    lists; `index()` then opens the rows with Store. Stage 2 also writes each process's features this way, straight
    from its workers' results, when no per-clip files are wanted (--no_png)."""

    def __init__(self, f, dtype: str) -> None:
        self.f, self.dtype = f, dtype
        self.rows: list[str] = []
        self.shapes: list[list[int]] = []
        self.checksums: list[int] = []

    def add(self, name: str, value: np.ndarray) -> int:
        """Append one row; returns its number."""
        value = np.ascontiguousarray(value, dtype=self.dtype)
        self.rows.append(name)
        self.shapes.append(list(value.shape))
        self.checksums.append(row_checksum(name, value))
        self.f.write(value.tobytes())
        return len(self.rows) - 1

    def finish(self, durable: bool = True) -> None:
        """Flush the rows; `durable`: to the disk too (a store, or a shard's part another job reads later; a scratch
        file that this process packs and deletes needs not wait ~50 ms for it)."""
        self.f.flush()
        if durable:
            os.fsync(self.f.fileno())

    def index(self) -> dict:
        return {"dtype": self.dtype, "rows": self.rows, "shapes": self.shapes, "checksums": self.checksums}


class StoreItems:
    """The stored items of one or more stores (a split loaded from several CSVs), addressed by one running index
    (two small integer arrays: which store, which row of it)."""

    def __init__(self, stores: list[Store], which: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        self.stores = stores
        if which is None:
            which = np.concatenate([np.full(len(store), s, np.int32) for s, store in enumerate(stores)])
            rows = np.concatenate([np.arange(len(store), dtype=np.int64) for store in stores])
        self.which, self.rows = which, rows

    def __len__(self) -> int:
        return len(self.rows)

    def shape(self, i: int) -> tuple[int, ...]:
        return tuple(self.stores[self.which[i]].shapes[self.rows[i]])

    def shapes(self) -> np.ndarray:
        """(items, ndim): every item's stored shape, in order."""
        if len(self.stores) == 1:
            return self.stores[0].shapes[self.rows]
        return np.stack([self.stores[s].shapes[r] for s, r in zip(self.which, self.rows)])

    def get(self, indices: Iterable[int]) -> list[np.ndarray]:
        return [self.stores[self.which[i]].item(self.rows[i]) for i in indices]

    def select(self, indices: Iterable[int]) -> "StoreItems":
        indices = np.asarray(list(indices), dtype=np.int64)
        return StoreItems(self.stores, self.which[indices], self.rows[indices])


class StoreRows:
    """Tensor-like stand-in for a FeatureSet tensor (x, or a per-item extra such as the mel canvas) over a store:
    indexing makes just the asked rows with `make(list of stored items) -> tensor`, exactly what the feature type's
    stack would have made for them. It has what the data path uses of a tensor: len, shape, dtype, device, int /
    slice / index-tensor indexing, cpu(), and double()/float() (the whole split, read into memory). It is not a
    tensor to torch functions: code that needs the whole split as one says so, `rows[:]`."""

    def __init__(self, items: StoreItems, make: Callable[[list[np.ndarray]], torch.Tensor], item_shape: tuple[int, ...],
                 dtype: torch.dtype) -> None:
        self.items, self.make, self.item_shape, self.dtype = items, make, tuple(item_shape), dtype
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.items), *self.item_shape))

    def dim(self) -> int:
        return 1 + len(self.item_shape)

    def cpu(self) -> "StoreRows":
        return self

    def select(self, index) -> "StoreRows":
        """The rows at `index`, still unread (a subset of a split, e.g. one fold)."""
        return StoreRows(self.items.select(torch.as_tensor(index).tolist()), self.make, self.item_shape, self.dtype)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            return self[key[0]][key[1:]]
        if isinstance(key, slice):
            key = range(*key.indices(len(self)))
        elif isinstance(key, (int, np.integer)) or (isinstance(key, torch.Tensor) and key.dim() == 0):
            return self[[int(key)]][0]
        indices = torch.as_tensor(key).cpu().tolist() if not isinstance(key, range) else list(key)
        if not indices:
            return torch.empty((0, *self.item_shape), dtype=self.dtype)
        return self.make(self.items.get(indices))

    def double(self) -> torch.Tensor:
        return self[:].double()

    def float(self) -> torch.Tensor:
        return self[:].float()

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def element_size(self) -> int:
        return torch.empty(0, dtype=self.dtype).element_size()
