"""Output resolution: the official 480/720 aspect-ratio buckets, cover-resize and centre crop (spec §5.1).

This module is the one place that resizes source frames (``resize_and_crop``) and masks.

``ASPECT_RATIO_627`` (infinitetalk-480) and ``ASPECT_RATIO_960`` (infinitetalk-720): key h/w -> (h, w).
The nearest key to the source's h/w wins (first in table order on ties). ``resize_and_crop`` scales by
``max(th/h, tw/w)`` to ``(ceil(s*h), ceil(s*w))`` and crops the centre with offsets
``round((new - target)/2)`` (Python round, half to even).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

BUCKETS = {
    "480": {0.26: (320, 1216), 0.38: (384, 1024), 0.50: (448, 896), 0.67: (512, 768), 0.82: (576, 704),
            1.00: (640, 640), 1.22: (704, 576), 1.50: (768, 512), 1.86: (832, 448), 2.00: (896, 448),
            2.50: (960, 384), 2.83: (1088, 384), 3.60: (1152, 320), 3.80: (1216, 320), 4.00: (1280, 320)},
    "720": {0.22: (448, 2048), 0.29: (512, 1792), 0.36: (576, 1600), 0.45: (640, 1408), 0.55: (704, 1280),
            0.63: (768, 1216), 0.76: (832, 1088), 0.88: (896, 1024), 1.00: (960, 960), 1.14: (1024, 896),
            1.31: (1088, 832), 1.50: (1152, 768), 1.58: (1216, 768), 1.82: (1280, 704), 1.91: (1344, 704),
            2.20: (1408, 640), 2.30: (1472, 640), 2.67: (1536, 576), 2.89: (1664, 576), 3.62: (1856, 512),
            3.75: (1920, 512)},
}


def bucket_size(src_h: int, src_w: int, bucket: str) -> tuple[int, int]:
    """(target_h, target_w) of the nearest aspect-ratio bucket ('480' or '720') for a source h x w."""
    if bucket not in BUCKETS:
        raise ValueError(f"Unknown resolution bucket '{bucket}'; choose one of {sorted(BUCKETS)} or give width/height.")
    ratio = src_h / src_w
    key = min(BUCKETS[bucket], key=lambda k: abs(k - ratio))  # min keeps the first on ties
    return BUCKETS[bucket][key]


def target_size(src_h: int, src_w: int, bucket: str = "480", width: int = 0, height: int = 0) -> tuple[int, int]:
    """(h, w) of the output: the bucket, or an explicit ``width`` x ``height`` (both multiples of 16)."""
    if width or height:
        if width <= 0 or height <= 0 or width % 16 or height % 16:
            raise ValueError(f"width and height must both be positive multiples of 16 (got {width}x{height}), "
                             f"e.g. 832x480; or size the output from the source with a bucket resolution.")
        return int(height), int(width)
    return bucket_size(src_h, src_w, bucket)


def _crop_box(h: int, w: int, th: int, tw: int) -> tuple[int, int, int, int]:
    scale = max(th / h, tw / w)
    nh, nw = math.ceil(scale * h), math.ceil(scale * w)
    top, left = int(round((nh - th) / 2)), int(round((nw - tw) / 2))
    return nh, nw, top, left


def resize_and_crop(frames: torch.Tensor, th: int, tw: int) -> torch.Tensor:
    """Cover-resize + centre crop of images, with the official resampler. frames: [T,H,W,3] float 0..1 (or uint8
    0..255) -> [T,th,tw,3] float32 0..1.

    The official code resizes a uint8 PIL image with ``Image.resize((w, h), resample=BILINEAR)`` (PIL's
    antialiased bilinear, rounded to uint8), so each frame needing a resize goes to uint8 (``round(x*255)``,
    exact for decoded video) and through that very call: a 1080p source gives the official reference pixels.
    Frames already at the cover size are only cropped."""
    t, h, w, _ = frames.shape
    nh, nw, top, left = _crop_box(h, w, th, tw)
    if (nh, nw) != (h, w):
        frames = torch.stack([_pil_bilinear(f, nh, nw) for f in frames])
    frames = frames[:, top:top + th, left:left + tw]
    return (frames.float() / 255 if frames.dtype == torch.uint8 else frames.to(torch.float32)).contiguous()


def _pil_bilinear(frame: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[H,W,3] float 0..1 (or uint8) -> [h,w,3] float32 on the 1/255 grid: PIL bilinear on the uint8 image."""
    if frame.dtype == torch.uint8:  # decoded video as is
        pixels = frame.detach().cpu().numpy()
    else:
        pixels = frame.detach().to("cpu", torch.float32).mul(255).round_().clamp_(0, 255).to(torch.uint8).numpy()
    resized = Image.fromarray(pixels).resize((w, h), resample=Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(resized).copy()).to(frame.device, torch.float32) / 255


def resize_and_crop_mask(mask: torch.Tensor, th: int, tw: int) -> torch.Tensor:
    """The same geometry for masks [N,H,W] (nearest, as the official tensor path) -> [N,th,tw]."""
    _, h, w = mask.shape
    nh, nw, top, left = _crop_box(h, w, th, tw)
    x = F.interpolate(mask[None].float(), size=(nh, nw), mode="nearest")[0]
    return x[:, top:top + th, left:left + tw]
