"""Mask shapes derived from face boxes, plus the morphology and temporal smoothing of mask videos.

All masks are float tensors ``[T,H,W]`` in 0..1 (ComfyUI MASK). Boxes are ``[T,4]`` (x0,y0,x1,y1)
pixels. The face box of a detector covers brows to mouth; the ellipses below are placed relative
to it so "face" reaches the chin and "lower_face" covers mouth, cheeks and chin (what lip sync
changes) while leaving the eyes alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

REGIONS = ("face", "lower_face", "mouth")

# (centre x, centre y, radius x, radius y) as fractions of the box width/height from its top-left.
_ELLIPSES = {
    "face": (0.5, 0.58, 0.62, 0.78),
    "lower_face": (0.5, 0.80, 0.50, 0.42),
    "mouth": (0.5, 0.82, 0.30, 0.20),
    "box": (0.5, 0.5, 0.5, 0.5),  # the ellipse inscribed in the box (box taken from a mask's extent)
}


def check_region(region: str) -> str:
    if region not in _ELLIPSES:
        raise ValueError(f"region '{region}' is not one of {', '.join(REGIONS)}.")
    return region


def region_ellipses(boxes: torch.Tensor, region: str) -> torch.Tensor:
    """[T,4] face boxes -> [T,4] ellipses (cx, cy, rx, ry) in pixels for ``region``."""
    fx, fy, frx, fry = _ELLIPSES[check_region(region)]
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.stack([boxes[:, 0] + fx * w, boxes[:, 1] + fy * h, frx * w, fry * h], dim=1)


def ellipse_masks(boxes: torch.Tensor, height: int, width: int, region: str = "face") -> torch.Tensor:
    """Filled ellipses of ``region`` for each box: [T,4] -> [T,H,W] float32 {0,1}."""
    return _fill(region_ellipses(boxes.float(), region), height, width)


def _fill(e: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[T,4] ellipses (cx, cy, rx, ry) -> [T,H,W] float32 {0,1} (pixel centres inside)."""
    ys = torch.arange(height, dtype=torch.float32)[None, :, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None, None, :] + 0.5
    dx = (xs - e[:, 0, None, None]) / e[:, 2, None, None].clamp(min=1e-3)
    dy = (ys - e[:, 1, None, None]) / e[:, 3, None, None].clamp(min=1e-3)
    return (dx * dx + dy * dy <= 1.0).float()


def restrict_to_region(masks: torch.Tensor, boxes: torch.Tensor, region: str) -> torch.Tensor:
    """Keep only the part of a segmented face that belongs to ``region`` ("face" keeps everything).

    For the lower face and mouth the segmentation is cut to the (slightly enlarged) region ellipse,
    so its outline follows the real jaw and cheeks while the eyes stay untouched."""
    if region == "face":
        return masks
    e = region_ellipses(boxes.float(), region)
    grown = torch.cat([e[:, :2], e[:, 2:] * 1.15], dim=1)
    return masks * _fill(grown, masks.shape[1], masks.shape[2])


def dilate(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow (pixels > 0) or shrink (pixels < 0) masks by a square structuring element. [T,H,W].

    The square is separable: a row pass then a column pass (O(k) instead of O(k^2) per pixel)."""
    if pixels == 0:
        return masks
    r = abs(pixels)
    x = masks[:, None].float()
    if pixels < 0:
        x = -x
    x = F.max_pool2d(x, (1, 2 * r + 1), stride=1, padding=(0, r))
    x = F.max_pool2d(x, (2 * r + 1, 1), stride=1, padding=(r, 0))
    return (-x if pixels < 0 else x)[:, 0]


def temporal_smooth_(masks: torch.Tensor, window: int) -> torch.Tensor:
    """In place: centred moving average over ``window`` frames (edges replicated), which removes
    frame-to-frame flicker of a segmentation while following real motion. [T,H,W] float, returned.

    Each frame is ``smoothed_frame`` of the originals (so a streamed render, which computes the masks of one
    window at a time, gets the same values); the last window//2 + 1 originals are kept: extra memory is a
    few frames however long the video is."""
    if window <= 1 or masks.shape[0] <= 1:
        return masks
    half, count = window // 2, masks.shape[0]
    originals: dict[int, torch.Tensor] = {}

    def original(t: int) -> torch.Tensor:
        return originals[t] if t in originals else masks[t]

    for t in range(count):
        originals[t] = masks[t].clone()
        originals.pop(t - half - 1, None)
        masks[t] = smoothed_frame(original, t, count, window)
    return masks


def smoothed_frame(original, t: int, count: int, window: int) -> torch.Tensor:
    """Frame ``t`` of the centred moving average over ``window`` frames of a mask video of ``count`` frames,
    edges replicated: the mean of ``original(j)`` ([H,W]) for j = t - window//2 .. t + window//2 clamped to
    the video, summed in that order (THE smoothing rule: ``temporal_smooth_`` and the streamed paste ask it)."""
    half = window // 2
    if window <= 1 or count <= 1:
        return original(t).float()
    acc = None
    for j in range(t - half, t + half + 1):
        m = original(min(max(j, 0), count - 1)).float()
        acc = m.clone() if acc is None else acc.add_(m)
    return acc / (2 * half + 1)


def feather(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Soft edge: separable Gaussian blur truncated at ``radius`` pixels. Pixels farther than
    ``radius`` from every nonzero pixel stay exactly 0. [T,H,W] -> [T,H,W] float32."""
    if radius <= 0:
        return masks.float()
    sigma = radius / 2.0
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    m = masks[:, None].float()
    m = F.conv2d(F.pad(m, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    # Exact zeros beyond the radius whatever algorithm the convolution used.
    reach = dilate((masks > 0).float(), radius)
    return (m[:, 0] * reach).clamp(0, 1)

