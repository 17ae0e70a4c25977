"""Log-mel spectrogram images: the seed's feature, made exactly as librosa makes it, stored as lossless 8-bit PNGs.

The numbers themselves (STFT, filterbank, dB, grey levels, resizing, windows) are made in toolkit/io/melspec.py, which
needs no torch. A clip becomes (n_mels, frames) dB values, scaled to uint8 grey levels with low frequencies at the bottom. Stage 3
resizes the frequency axis to 128 rows and either stretches the time axis to 128 columns (the seed's 'resize') or
keeps its scale and pads/crops to a window of `frames` columns ('pad': a random window per epoch in training, the
centred one for evaluation). Networks see the grey levels scaled to [0, 1] and repeated over 3 channels.
librosa is imported lazily so that training (which only reads images) runs where librosa is absent.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from PIL import Image

from toolkit.config import TIME_AXES
from toolkit.errors import ToolkitError
from toolkit.features.base import FeatureParams, FeatureSet, FeatureType
from toolkit.io.melspec import (DB_REFS, FIXED_TOP_DB, IMAGE_SIZE, MEL_SCALES, MIN_AUDIBLE, PAD_MODES,  # noqa: F401 (public here too)
                                check_mel_params, image_windows, log_mel, mel_basis, mel_frequencies, mel_image,
                                paste_window, prepare_image, resize_image, to_image, window_seconds, window_start,
                                window_starts)
from toolkit.features.store import StoreItems, StoreRows
from toolkit.fileio import atomic_path
from toolkit.io.audio import ClipError

NORMALIZED_CENTRE, NORMALIZED_SCALE = 128, 32  # --normalize speaker: a band's z-score z is stored as 128 + 32 z



# Parameters added after images were first made: at these values they are left out of the folder name's digest, so
# folders made before they existed are still found (and not remade) by a later stage 2 with the same settings.
NEWER_PARAMETERS = {"mel_scale": "slaney", "pad_mode": "constant"}


@dataclass(frozen=True)
class MelParams(FeatureParams):
    n_fft: int = 1536
    hop_length: int = 512
    n_mels: int = 180
    top_db: float = 80.0  # dynamic range kept below the reference, the seed's power_to_db default
    db_ref: str = "max"  # 'max': each clip against its own peak (the seed); 'fixed': against full scale
    mel_scale: str = "slaney"  # librosa's default filterbank; the seed used 'htk'
    pad_mode: str = "constant"  # how the STFT pads the clip's ends (librosa >= 0.10's default); the seed's: 'reflect'

    def tag_prefix(self) -> str:
        return f"sr{self.sr}_fft{self.n_fft}_hop{self.hop_length}_mels{self.n_mels}"

    def digest(self) -> str:
        values = {k: v for k, v in asdict(self).items() if NEWER_PARAMETERS.get(k, object()) != v}
        return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]

    def check(self, source: str) -> None:
        super().check(source)
        check_mel_params(self, source)


def seed_preset(category: str) -> MelParams:
    """The seed project's spectrograms for a category: htk mel, reflect padding, every clip against its own peak;
    age used a longer window and hop (n_fft 2048, hop 1024)."""
    params = MelParams(db_ref="max", mel_scale="htk", pad_mode="reflect")
    return replace(params, n_fft=2048, hop_length=1024) if category == "age" else params


PRESETS = {"default": lambda category: MelParams(db_ref="fixed"), "seed": seed_preset}


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


def canvas_width(widths: list[int], frames: int) -> int:
    """The canvas's width for clips `widths` frames long: the longest, at least one window, at most 2 windows."""
    return min(max(frames, max(widths)), 2 * frames)


def _canvas(images: list[np.ndarray], frames: int, width: int | None = None) -> dict[str, torch.Tensor]:
    """Clips left-aligned on one zero canvas, at most 2 windows wide (longer clips keep their centre); `width`: the
    whole split's canvas width when `images` are some of its clips."""
    width = width or canvas_width([im.shape[1] for im in images], frames)
    canvas = np.zeros((len(images), 1, images[0].shape[0], width), np.uint8)
    lengths = []
    for out, image in zip(canvas, images):
        length = min(image.shape[1], width)
        paste_window(out[..., :length], image, image.shape[1], window_start(image.shape[1], length))
        lengths.append(length)
    return {"canvas": torch.from_numpy(canvas), "lengths": torch.tensor(lengths)}


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


class Mel(FeatureType):
    name = "mel"
    kind = "image"
    folder = "mel_spectrograms"
    suffix = ".png"
    Params = MelParams
    store_dtype = "uint8"

    @classmethod
    def column(cls) -> str:
        return "Image_file_path"  # the seed's name

    @classmethod
    def add_args(cls, p) -> None:
        import argparse

        from toolkit.config import positive_int

        default, seed, seed_age = PRESETS["default"](""), seed_preset(""), seed_preset("age")

        def values(name: str) -> str:
            text = f"default: {getattr(default, name)}; --preset seed: {getattr(seed, name)}"
            return text + (f" ({getattr(seed_age, name)} for age)" if getattr(seed_age, name) != getattr(seed, name) else "")

        p.add_argument("--preset", choices=list(PRESETS), default="default",
                       help="'default': the measured settings; 'seed': the seed project's spectrograms for --category "
                            "(htk mel, reflect padding, each clip against its own peak; for age a 2048 window, hop 1024). "
                            "A flag given on the command line overrides its preset value")
        for name, kwargs, text in (
            ("n_fft", dict(type=positive_int), "STFT window length (samples)"),
            ("hop_length", dict(type=positive_int), "STFT hop (samples)"),
            ("n_mels", dict(type=positive_int), "mel bands (image height)"),
            ("db_ref", dict(choices=DB_REFS), "dB reference: 'fixed' = full scale, window -40..+40 dB, so loudness "
                                              "survives (measured in experiments/RESULTS.md); 'max' = each clip's own peak, "
                                              "as the seed (loudness lost)"),
            ("mel_scale", dict(choices=MEL_SCALES), "mel filterbank: librosa's 'slaney' or the 'htk' formula"),
            ("pad_mode", dict(choices=PAD_MODES), "how the STFT pads the clip's ends: zeros or a mirror image"),
        ):
            p.add_argument(f"--{name}", default=argparse.SUPPRESS, help=f"{text} ({values(name)})", **kwargs)

    @classmethod
    def params_from_args(cls, args) -> MelParams:
        given = {k: getattr(args, k) for k in ("n_fft", "hop_length", "n_mels", "db_ref", "mel_scale", "pad_mode")
                 if hasattr(args, k)}
        return replace(PRESETS[args.preset](args.category), sr=args.sr, **given)

    @classmethod
    def extract(cls, audio: np.ndarray, params: MelParams) -> np.ndarray:
        return mel_image(audio, params)

    @classmethod
    def window_seconds(cls, options: dict, params: MelParams) -> float:
        return window_seconds(options, params)

    @classmethod
    def windows(cls, audio: np.ndarray, params: MelParams, window: float, hop: float) -> list[tuple[float, float, np.ndarray]]:
        return image_windows(cls.extract(audio, params), len(audio), params, window, hop)

    @classmethod
    def warm_up(cls, params: MelParams) -> None:
        # librosa's first call costs ~1 s of scipy imports: paid once here, inherited by the forked workers
        log_mel(np.ones(params.n_fft, np.float32), params)

    @classmethod
    def save(cls, feature: np.ndarray, path: str) -> None:
        save_png(feature, path)

    @classmethod
    def read(cls, path: str) -> np.ndarray:
        return read_image(path)

    @classmethod
    def check_options(cls, options: dict, shape: list[int], source: str) -> None:
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

    @classmethod
    def input_options(cls, config) -> dict:
        if config.time_axis == "pad":
            return {"image_size": [IMAGE_SIZE[0], config.frames], "time_axis": "pad", "frames": config.frames}
        return {"image_size": list(IMAGE_SIZE), "time_axis": "resize", "frames": None}

    @classmethod
    def stack(cls, features: list[np.ndarray], options: dict) -> dict[str, torch.Tensor]:
        size, time_axis, frames = tuple(options["image_size"]), options["time_axis"], options["frames"]
        out = {"x": torch.from_numpy(np.stack([prepare_image(f, size, time_axis, frames) for f in features]))}
        if time_axis == "pad":  # whole clips too, so that training can draw a fresh window every epoch
            out.update(_canvas([resize_image(f, size[0], f.shape[1]) for f in features], frames))
        return out

    @classmethod
    def stack_rows(cls, items: StoreItems, options: dict) -> dict:
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
        return out

    @classmethod
    def speaker_normalize(cls, features: list[np.ndarray]) -> list[np.ndarray]:
        """Remove one speaker's mean and spread per mel band (over the speaker's non-silent pixels of all clips).

        The images stay uint8: a z-score z is stored as 128 + 32 z (clipped to 1..255); silent pixels (0, the dB
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

    @classmethod
    def fit_stats(cls, x: torch.Tensor) -> dict | None:
        return None  # grey levels are already on one fixed scale

    @classmethod
    def eval_windows(cls, data: FeatureSet) -> tuple[torch.Tensor, torch.Tensor] | None:
        """time_axis 'pad': every clip longer than the window as its windows (hop half a window) from the canvas;
        the others as their centred window. None when no clip is longer (or there is no canvas)."""
        if "canvas" not in data.extra:
            return None
        frames = data.x.shape[-1]
        lengths = data.extra["lengths"].tolist()
        if max(lengths) <= frames:
            return None
        canvas = data.extra["canvas"].cpu()
        windows, owner = [], []
        for i, length in enumerate(lengths):
            if length <= frames:
                windows.append(data.x[i].cpu())
                owner.append(i)
                continue
            for start in window_starts(length, frames, frames // 2):
                windows.append(canvas[i, ..., start : start + frames])
                owner.append(i)
        return torch.stack(windows), torch.tensor(owner)

    @classmethod
    def take(cls, data: FeatureSet, index: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if generator is not None and "canvas" in data.extra:  # training on 'pad': a new window per clip and epoch
            return random_windows(data, index, data.x.shape[-1], generator)
        return data.x[index.to(data.x.device)]

    @classmethod
    def to_input(cls, x: torch.Tensor, device: torch.device, stats: dict | None) -> torch.Tensor:
        """uint8 (B,1,H,W) -> float (B,3,H,W) in [0, 1] on `device`."""
        x = x.to(device, non_blocking=True).float().div_(255).expand(-1, 3, -1, -1)
        if device.type == "cuda":
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()

    @classmethod
    def augmentation(cls, config, params: dict):
        from toolkit.augmentation.augment import Augment

        augment = Augment(time_masks=config.time_masks, time_width=config.time_width, freq_masks=config.freq_masks,
                          freq_width=config.freq_width, gain_db=config.gain_db, mixup=config.mixup,
                          top_db=float(params.get("top_db", MelParams.top_db)))
        return augment if augment.active() else None
