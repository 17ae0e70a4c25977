"""Time-frequency images: what any 2-D feature (log-mel, log filterbank, ...) shares on its way into a CNN.

A feature of this kind makes a clip into a uint8 image, frequency rows with the lowest at the bottom and one column per
frame, stored as a lossless 8-bit PNG (PngImages). Its input adapter (TimeFrequencyInput) resizes the frequency axis to
128 rows and either stretches the time axis to 128 columns ('resize', the seed's) or keeps its scale and pads/crops to
a window of `frames` columns ('pad': a random window per epoch in training, the centred one, or all of a long clip's
windows, for evaluation), applies SpecAugment and gain, and gives the network grey levels in [0, 1] over 3 channels.
A new image feature subclasses TimeFrequencyImage and gives only its parameters and extract (see fbank.py).
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from toolkit.config import TIME_AXES
from toolkit.errors import ToolkitError
from toolkit.features.base import FeatureSet, FeatureType, PerItem
from toolkit.features.store import StoreItems, StoreRows
from toolkit.fileio import atomic_path
from toolkit.io.audio import ClipError
from toolkit.io.melspec import IMAGE_SIZE, paste_window, prepare_image, resize_image, window_seconds
from toolkit.io.windows import image_windows, window_and_hop, window_start
from toolkit.lazy import torch  # imported when first used: --help and the registry need no torch

NORMALIZED_CENTRE, NORMALIZED_SCALE = 128, 32  # --normalize speaker: a band's z-score z is stored as 128 + 32 z


def save_png(image: np.ndarray, path: str) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(image, mode="L").save(tmp, format="PNG")


def read_image(path: str) -> np.ndarray:
    """A spectrogram image as a 2-D uint8 array (colour images from other tools are converted to grey)."""
    if not os.path.isfile(path):  # a FIFO would block PIL forever
        what = "not a regular file" if os.path.exists(path) else "image not found"
        raise ClipError(f"{path}: {what}; re-run generate_mel_spectrograms.py")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"))
    except Exception as e:
        raise ClipError(f"{path}: not a readable image ({type(e).__name__}); delete it and re-run stage 2")


class PngImages:
    """Storage of uint8 images: one lossless 8-bit PNG per clip; uint8 rows in the packed store."""

    suffix = ".png"
    dtype = "uint8"

    def save(self, feature: np.ndarray, path: str) -> None:
        save_png(feature, path)

    def read(self, path: str) -> np.ndarray:
        return read_image(path)


def canvas_width(widths: list[int], frames: int) -> int:
    """The canvas's width for clips `widths` frames long: the longest, at least one window, at most 2 windows."""
    return min(max(frames, max(widths)), 2 * frames)


def _canvas(images: list[np.ndarray], frames: int, width: int | None = None) -> dict:
    """Clips left-aligned on one zero canvas, at most 2 windows wide (longer clips keep their centre there, and whole
    in `wide`, for evaluation); `width`: the whole split's canvas width when `images` are some of its clips."""
    width = width or canvas_width([im.shape[1] for im in images], frames)
    canvas = np.zeros((len(images), 1, images[0].shape[0], width), np.uint8)
    lengths = []
    for out, image in zip(canvas, images):
        length = min(image.shape[1], width)
        paste_window(out[..., :length], image, image.shape[1], window_start(image.shape[1], length))
        lengths.append(length)
    wide = PerItem([image if image.shape[1] > width else None for image in images])
    return {"canvas": torch.from_numpy(canvas), "lengths": torch.tensor(lengths), "wide": wide}


def random_windows(data: FeatureSet, index: torch.Tensor, frames: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, 1, H, frames): a fresh random window of each clip in `index` (time_axis 'pad', training).

    One gather on the canvas's device (no per-clip Python loop, so a GPU is not held up). Placements are uniform
    over every position that keeps as much of the clip as fits: a short clip moves around inside the window
    (silence either side), a long one is cropped.
    """
    canvas_all, lengths_all = data.extra["canvas"], data.extra["lengths"]
    device = canvas_all.device  # the canvas and its lengths move together (move_to_device)
    index = index.to(device)
    lengths = lengths_all[index]
    lo, hi = (lengths - frames).clamp(max=0), (lengths - frames).clamp(min=0)
    draws = torch.rand(len(index), generator=generator).to(device)  # the CPU generator keeps runs repeatable
    starts = lo + (draws * (hi - lo + 1)).long().clamp(max=hi - lo)
    columns = starts[:, None] + torch.arange(frames, device=device)  # (B, frames), may fall outside the clip
    inside = (columns >= 0) & (columns < lengths[:, None])
    canvas = canvas_all[index]
    columns = columns.clamp(0, canvas.shape[-1] - 1)[:, None, None, :].expand(-1, *canvas.shape[1:3], -1)
    return canvas.gather(-1, columns) * inside[:, None, None, :]


class TimeFrequencyInput:
    """How stored time-frequency images become network inputs, for any feature of this kind.

    seconds_per_frame: the time one image column stands for (the window of predict.py and long test clips);
    top_db: the dB range the 255 grey levels span, which gain augmentation shifts in (None: the image has no dB
    scale, so --gain_db does not apply).
    """

    kind = "image"

    def __init__(self, seconds_per_frame: float, top_db: float | None) -> None:
        self.seconds_per_frame, self.top_db = seconds_per_frame, top_db

    def window_seconds(self, options: dict) -> float:
        return window_seconds(options, self.seconds_per_frame)

    def windows(self, feature: FeatureType, audio: np.ndarray, window: float, hop: float) -> list:
        """The recording's image once (so the STFT sees each window's surroundings), cut into windows of columns."""
        return image_windows(feature.extract(audio), len(audio) / feature.params.sr, self.seconds_per_frame, window, hop)

    def check_options(self, options: dict, shape: list[int], source: str) -> None:
        size, time_axis, frames = options.get("image_size"), options.get("time_axis"), options.get("frames")
        if time_axis not in TIME_AXES:
            raise ToolkitError(f"{source}: time_axis {time_axis!r} is not one of {', '.join(TIME_AXES)}; restore the file")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) and 8 <= n <= 4096 for n in size)):
            raise ToolkitError(f"{source}: image_size {size!r} is not [height, width] in pixels; restore the file")
        if (frames != size[1]) if time_axis == "pad" else frames is not None:
            raise ToolkitError(f"{source}: frames {frames!r} does not go with time_axis {time_axis} and image_size "
                               f"{size}; restore the file")
        if shape != [3, *size]:
            raise ToolkitError(f"{source}: input shape {shape} is not that of {size[0]}×{size[1]} images; restore the file")

    def input_options(self, config) -> dict:
        if config.time_axis == "pad":
            return {"image_size": [IMAGE_SIZE[0], config.frames], "time_axis": "pad", "frames": config.frames}
        return {"image_size": list(IMAGE_SIZE), "time_axis": "resize", "frames": None}

    def stack(self, features: list[np.ndarray], options: dict) -> dict:
        size, time_axis, frames = tuple(options["image_size"]), options["time_axis"], options["frames"]
        out = {"x": torch.from_numpy(np.stack([prepare_image(f, size, time_axis, frames) for f in features]))}
        if time_axis == "pad":  # whole clips too, so that training can draw a fresh window every epoch
            out.update(_canvas([resize_image(f, size[0], f.shape[1]) for f in features], frames))
        return out

    def stack_rows(self, items: StoreItems, options: dict) -> dict:
        """`stack` made lazily over a packed store: the window images and the canvas rows of a batch are made from
        the mapped bytes when it is taken, by the same functions; the canvas width comes from the stored shapes."""
        size, time_axis, frames = tuple(options["image_size"]), options["time_axis"], options["frames"]
        out = {"x": StoreRows(items, lambda fs: torch.from_numpy(np.stack([prepare_image(f, size, time_axis, frames)
                                                                           for f in fs])), (1, *size), torch.uint8)}
        if time_axis == "pad":
            widths = items.shapes()[:, 1].tolist()
            width = canvas_width(widths, frames)
            out["canvas"] = StoreRows(items, lambda fs: _canvas([resize_image(f, size[0], f.shape[1]) for f in fs], frames,
                                                                width)["canvas"], (1, size[0], width), torch.uint8)
            out["lengths"] = torch.tensor([min(w, width) for w in widths])
            wide = [i for i, w in enumerate(widths) if w > width]  # few: read now, for evaluation's windows
            images = dict(zip(wide, items.get(wide))) if wide else {}
            out["wide"] = PerItem([resize_image(images[i], size[0], w) if i in images else None
                                   for i, w in enumerate(widths)])
        return out

    def speaker_normalize(self, features: list[np.ndarray]) -> list[np.ndarray]:
        """Remove one speaker's mean and spread per frequency row (over the speaker's non-silent pixels of all clips).

        The images stay uint8: a z-score z is stored as 128 + 32 z (clipped to 1..255); silent pixels (0, the
        floor) stay 0, so padding, masks and the floor keep their meaning.
        """
        pixels = np.concatenate(features, axis=1).astype(np.float64)
        valid = pixels > 0
        count = np.maximum(valid.sum(1, keepdims=True), 1)
        mean = (pixels * valid).sum(1, keepdims=True) / count
        std = np.sqrt((((pixels - mean) * valid) ** 2).sum(1, keepdims=True) / count)
        std = np.maximum(std, 1.0)  # a band with one grey level: at least one level of spread
        out = []
        for f in features:
            z = (f - mean) / std
            scaled = np.clip(np.round(NORMALIZED_CENTRE + NORMALIZED_SCALE * z), 1, 255)
            out.append(np.where(f > 0, scaled, 0).astype(np.uint8))
        return out

    def fit_stats(self, x: torch.Tensor) -> dict | None:
        return None  # grey levels are already on one fixed scale

    def eval_windows(self, data: FeatureSet) -> tuple[torch.Tensor, torch.Tensor] | None:
        """time_axis 'pad': every clip longer than the window as its windows, cut as predict.py cuts a recording
        (toolkit/io/windows.py: the same starts and hop), the others as their centred window. None when no clip is
        longer (or there is no canvas)."""
        if "canvas" not in data.extra:
            return None
        frames = data.x.shape[-1]
        lengths = data.extra["lengths"].tolist()
        wide = data.extra.get("wide")
        if max(lengths) <= frames:
            return None
        window, hop = window_and_hop(self.window_seconds(data.options))
        canvas = data.extra["canvas"].cpu()
        windows, owner = [], []
        for i, length in enumerate(lengths):
            if length <= frames:
                windows.append(data.x[i].cpu())
                owner.append(i)
                continue
            image = wide[i] if wide is not None and wide[i] is not None else canvas[i, 0, :, :length].numpy()
            for _, _, columns in image_windows(image, 0.0, self.seconds_per_frame, window, hop):
                windows.append(torch.from_numpy(np.ascontiguousarray(columns))[None])
                owner.append(i)
        return torch.stack(windows), torch.tensor(owner)

    def take(self, data: FeatureSet, index: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if generator is not None and "canvas" in data.extra:  # training on 'pad': a new window per clip and epoch
            return random_windows(data, index, data.x.shape[-1], generator)
        return data.x[index.to(data.x.device)]

    def to_input(self, x: torch.Tensor, device: torch.device, stats: dict | None) -> torch.Tensor:
        """uint8 (B,1,H,W) -> float (B,3,H,W) in [0, 1] on `device`."""
        x = x.to(device, non_blocking=True).float().div_(255).expand(-1, 3, -1, -1)
        if device.type == "cuda":
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()

    def augmentation(self, config):
        from toolkit.augmentation.augment import Augment

        if config.gain_db and self.top_db is None:
            raise ToolkitError(f"--gain_db {config.gain_db:g}: these images have no dB scale to shift; use --gain_db 0")
        augment = Augment(time_masks=config.time_masks, time_width=config.time_width, freq_masks=config.freq_masks,
                          freq_width=config.freq_width, gain_db=config.gain_db, mixup=config.mixup,
                          top_db=float(self.top_db or 0.0))
        return augment if augment.active() else None


class TimeFrequencyImage(FeatureType):
    """A feature stored as a uint8 time-frequency image. A subclass gives name, folder, Params (with sr, hop_length and
    top_db: the dB range of the 255 grey levels, or top_db None for images without a dB scale) and extract."""

    def make_storage(self) -> PngImages:
        return PngImages()

    def make_input(self) -> TimeFrequencyInput:
        return TimeFrequencyInput(self.params.hop_length / self.params.sr, getattr(self.params, "top_db", None))
