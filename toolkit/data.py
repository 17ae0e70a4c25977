"""CSV of spectrogram images -> one compact in-memory uint8 tensor per split, batched without a DataLoader.

Every image is decoded and resized once; an epoch only indexes the tensor. Channels are stored once (N×1×H×W)
and expanded to the 3 the networks expect when a batch is made.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from .audio import ClipError, read_image
from .errors import ToolkitError
from .fileio import read_json, resolve_from_csv
from .labels import encode_labels

IMAGE_SIZE = (128, 128)  # (height, width) the seed's networks were designed for
PARAMS_FILE = "params.json"  # written by stage 2 beside the images: how they were made


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
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ToolkitError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    if df.empty:
        raise ToolkitError(f"{path}: the CSV has no rows; re-run the stage that writes it with more data")
    return df


def prepare_image(image: np.ndarray, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """2-D uint8 spectrogram -> (1, H, W) uint8 network input (the seed stretches the whole clip to the size)."""
    if image.shape != size:
        image = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))
    return image[None]


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, 1, H, W) uint8
    labels: torch.Tensor  # (N,) int64; -1 where unlabeled
    paths: list[str]
    frame: pd.DataFrame  # the CSV rows that were loaded, in the same order
    spectrogram: dict = field(default_factory=dict)  # stage 2 parameters, from params.json

    def __len__(self) -> int:
        return len(self.labels)


def spectrogram_params(image_path: str) -> dict:
    params = os.path.join(os.path.dirname(image_path), PARAMS_FILE)
    return read_json(params) if os.path.isfile(params) else {}


def load_images(csv_path: str, category: str | None, size: tuple[int, int] = IMAGE_SIZE, desc: str = "") -> ImageSet:
    """Load every image a CSV lists (column Image_file_path). Unreadable images are reported and left out."""
    df = read_csv(csv_path, ["Image_file_path"] + ([category] if category else []))
    labels = encode_labels(df, category, csv_path) if category else [-1] * len(df)
    paths = [resolve_from_csv(p, csv_path) for p in df["Image_file_path"].astype(str)]
    images, keep, failed = [], [], []
    for i, path in enumerate(tqdm(paths, desc=f"loading {desc or os.path.basename(csv_path)}", unit="img", leave=False)):
        try:
            images.append(prepare_image(read_image(path), size))
            keep.append(i)
        except ClipError as e:
            failed.append(str(e))
    if failed:
        print(f"warning: {len(failed)} image(s) listed in {csv_path} could not be read and are left out, e.g. {failed[0]}")
    if not keep:
        raise ToolkitError(f"{csv_path}: none of its {len(df)} images could be read; re-run generate_mel_spectrograms.py")
    return ImageSet(
        images=torch.from_numpy(np.stack(images)),
        labels=torch.tensor([labels[i] for i in keep], dtype=torch.long),
        paths=[paths[i] for i in keep],
        frame=df.iloc[keep].reset_index(drop=True),
        spectrogram=spectrogram_params(paths[keep[0]]),
    )


def to_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B,1,H,W) -> float (B,3,H,W) in [0, 1] on `device`."""
    x = images.to(device, non_blocking=True).float().div_(255).expand(-1, 3, -1, -1)
    if device.type == "cuda":
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def batches(
    data: ImageSet, batch_size: int, device: torch.device, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, labels) batches; shuffled when a generator is given, in order otherwise."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(data.images.device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield to_input(data.images[idx], device), data.labels[idx].to(device, non_blocking=True)


def move_to_device(data: ImageSet, device: torch.device, max_fraction: float = 0.5) -> ImageSet:
    """On a GPU keep the whole split on the device (it is uint8: 49 KB an image) when it fits comfortably."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if data.images.numel() < max_fraction * free:
            data.images = data.images.to(device)
            data.labels = data.labels.to(device)
        else:
            data.images = data.images.pin_memory()
    return data
