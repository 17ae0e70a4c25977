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

from .audio import PARAMS_FILE, ClipError, read_image
from .errors import ToolkitError
from .fileio import read_csv, read_json, resolve_from_csv
from .labels import encode_labels

IMAGE_SIZE = (128, 128)  # (height, width) the seed's networks were designed for
TIME_AXES = ("resize", "pad")  # 'resize': stretch every clip to the width (the seed); 'pad': keep the time scale
TIME_FRAMES = 128  # 'pad': 128 hops of 512 samples at 16 kHz = 4.1 s, so the networks still see 128×128


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def window_start(length: int, frames: int) -> int:
    """First frame of the centred `frames`-wide window on a clip `length` frames long (negative: the clip is
    shorter and starts later). Evaluation uses it; training draws random placements (random_windows)."""
    return (length - frames) // 2


def paste_window(out, image, length: int, start: int) -> None:
    """Copy frames [start, start + width of out) of `image` (first `length` columns valid) into `out`.

    Columns outside the clip are left as they are (zero: the dB floor, silence). numpy or torch alike.
    """
    lo, hi = max(start, 0), min(length, start + out.shape[-1])
    if hi > lo:
        out[..., lo - start : hi - start] = image[..., lo:hi]


def prepare_image(image: np.ndarray, size: tuple[int, int] = IMAGE_SIZE, time_axis: str = "resize",
                  frames: int | None = None) -> np.ndarray:
    """2-D uint8 spectrogram -> (1, H, W) uint8 network input, as stage 3 and predict.py see it.

    'resize' stretches the whole clip to `size` (the seed's choice: tempo is lost); 'pad' resizes only the
    frequency axis to size[0] and centres the clip in a window of `frames` columns (padding with silence,
    cropping longer clips), so one frame is always the same 32 ms.
    """
    if time_axis == "resize":
        return _resize(image, *size)[None]
    if time_axis != "pad":
        raise ToolkitError(f"unknown time axis '{time_axis}': choose one of {', '.join(TIME_AXES)}")
    frames = frames or TIME_FRAMES
    image = _resize(image, size[0], image.shape[1])
    out = np.zeros((1, size[0], frames), np.uint8)
    paste_window(out, image, image.shape[1], window_start(image.shape[1], frames))
    return out


def input_meta(time_axis: str = "resize", frames: int | None = None, size: tuple[int, int] = IMAGE_SIZE) -> dict:
    """What a training run records in its JSON sidecar about its network inputs (read back by input_options)."""
    if time_axis == "pad":
        frames = frames or TIME_FRAMES
        return {"image_size": [size[0], frames], "time_axis": "pad", "frames": frames}
    return {"image_size": list(size), "time_axis": "resize", "frames": None}


def input_options(sidecar: dict) -> dict:
    """prepare_image/load_images keyword arguments from a sidecar (or input_meta); old sidecars mean the seed's."""
    return {"size": tuple(sidecar.get("image_size", IMAGE_SIZE)), "time_axis": sidecar.get("time_axis", "resize"),
            "frames": sidecar.get("frames")}


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, 1, H, W) uint8
    labels: torch.Tensor  # (N,) int64; -1 where unlabeled
    paths: list[str]
    frame: pd.DataFrame  # the CSV rows that were loaded, in the same order
    spectrogram: dict = field(default_factory=dict)  # stage 2 parameters, from params.json
    # time_axis 'pad' only: every clip left-aligned on a wider uint8 canvas (N, 1, H, W') with its length in
    # frames, so training can take a fresh random window each epoch; `images` holds the centred windows.
    canvas: torch.Tensor | None = None
    lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)


def subset(data: ImageSet, index) -> ImageSet:
    """The items at `index` (e.g. one cross-validation fold), as a new ImageSet."""
    index = torch.as_tensor(np.array(index), dtype=torch.long)

    def pick(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[index.to(t.device)]

    return ImageSet(images=pick(data.images), labels=pick(data.labels), paths=[data.paths[i] for i in index.tolist()],
                    frame=data.frame.iloc[index.numpy()].reset_index(drop=True), spectrogram=data.spectrogram,
                    canvas=pick(data.canvas), lengths=pick(data.lengths))


def spectrogram_params(image_path: str) -> dict:
    params = os.path.join(os.path.dirname(image_path), PARAMS_FILE)
    return read_json(params) if os.path.isfile(params) else {}


def load_images(csv_path: str | list[str], category: str | None, size: tuple[int, int] = IMAGE_SIZE, desc: str = "",
                time_axis: str = "resize", frames: int | None = None) -> ImageSet:
    """Load every image a CSV lists (column Image_file_path); a list of CSVs is loaded as one set.

    Unreadable images are reported and left out. time_axis/frames: see prepare_image.
    """
    csvs = [csv_path] if isinstance(csv_path, (str, os.PathLike)) else list(csv_path)
    csv_path = ", ".join(map(str, csvs))
    tables = [read_csv(c, ["Image_file_path"] + ([category] if category else [])) for c in csvs]
    labels = [v for c, t in zip(csvs, tables) for v in (encode_labels(t, category, c) if category else [-1] * len(t))]
    paths = [resolve_from_csv(p, c) for c, t in zip(csvs, tables) for p in t["Image_file_path"].astype(str)]
    df = pd.concat(tables, ignore_index=True)
    images, keep, failed, canvas = [], [], [], []
    for i, path in enumerate(tqdm(paths, desc=f"loading {desc or os.path.basename(csvs[0])}", unit="img", leave=False)):
        try:
            image = read_image(path)
            images.append(prepare_image(image, size, time_axis, frames))
            if time_axis == "pad":
                canvas.append(_resize(image, size[0], image.shape[1]))
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
        **(_canvas(canvas, frames or TIME_FRAMES) if canvas else {}),
    )


def _canvas(images: list[np.ndarray], frames: int) -> dict:
    """Clips left-aligned on one zero canvas, at most 2 windows wide (longer clips keep their centre)."""
    width = min(max(frames, max(im.shape[1] for im in images)), 2 * frames)
    canvas = np.zeros((len(images), 1, images[0].shape[0], width), np.uint8)
    lengths = []
    for out, image in zip(canvas, images):
        length = min(image.shape[1], width)
        paste_window(out[..., :length], image, image.shape[1], window_start(image.shape[1], length))
        lengths.append(length)
    return {"canvas": torch.from_numpy(canvas), "lengths": torch.tensor(lengths)}


def random_windows(data: ImageSet, index: torch.Tensor, frames: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, 1, H, frames): a fresh random window of each clip in `index` (time_axis 'pad', training).

    One gather on the canvas's device (no per-clip Python loop, so a GPU is not held up). Placements are uniform
    over every position that keeps as much of the clip as fits: a short clip moves around inside the window
    (silence either side), a long one is cropped.
    """
    device = data.canvas.device  # the canvas and its lengths move together (move_to_device)
    index = index.to(device)
    lengths = data.lengths[index]
    lo, hi = (lengths - frames).clamp(max=0), (lengths - frames).clamp(min=0)
    draws = torch.rand(len(index), generator=generator).to(device)  # the CPU generator keeps runs repeatable
    starts = lo + (draws * (hi - lo + 1)).long().clamp(max=hi - lo)
    columns = starts[:, None] + torch.arange(frames, device=device)  # (B, frames), may fall outside the clip
    inside = (columns >= 0) & (columns < lengths[:, None])
    canvas = data.canvas[index]
    columns = columns.clamp(0, canvas.shape[-1] - 1)[:, None, None, :].expand(-1, *canvas.shape[1:3], -1)
    return canvas.gather(-1, columns) * inside[:, None, None, :]


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
    # Training on a 'pad' set draws a new window per clip and epoch: time shifts the model must not care about.
    crop = generator is not None and data.canvas is not None
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        images = random_windows(data, idx, data.images.shape[-1], generator) if crop else data.images[idx]
        yield to_input(images, device), data.labels[idx].to(device, non_blocking=True)


def move_to_device(data: ImageSet, device: torch.device, max_fraction: float = 0.5) -> ImageSet:
    """On a GPU keep the whole split on the device (it is uint8: 49 KB an image) when it fits comfortably."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if data.images.numel() < max_fraction * free:
            data.images = data.images.to(device)
            data.labels = data.labels.to(device)
            if data.canvas is not None and data.canvas.numel() < max_fraction * free:
                data.canvas, data.lengths = data.canvas.to(device), data.lengths.to(device)
        else:
            data.images = data.images.pin_memory()
    return data
