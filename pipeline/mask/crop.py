"""Crop a stable face region out of a video for generation, and paste the generated crop back.

The crop rectangle is the union of the face boxes over the whole clip (or over each window of
``window`` frames), padded, widened to the target aspect ratio, snapped to a multiple of 16
source pixels and kept inside the frame; every crop is resized to one target size (the
sampler's bucket). Pasting resizes the generated crop back to its rectangle and blends it in
through a feathered mask, so pixels outside the mask stay exactly the source.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .colour import ColourMatcher
from .composite import blend_frame, mask_at, resize_frames
from .regions import check_region, dilate, ellipse_masks

CROP_INFO_TYPE = "INFINITETALK_CROP_INFO"


@dataclass
class CropInfo:
    """Where each crop frame came from.

    source_size: (H, W) of the source video; target_size: (h, w) of the crop frames;
    rects: [T,4] int64 (x0,y0,x1,y1) crop rectangle per source frame (constant within a window);
    boxes: [T,4] float32 face boxes in source pixels (they give the default paste mask);
    region: the mask region pasted by default ("face", "lower_face" or "mouth")."""
    source_size: tuple[int, int]
    target_size: tuple[int, int]
    rects: torch.Tensor
    boxes: torch.Tensor
    region: str = "face"

    def frames(self, start: int, stop: int) -> "CropInfo":
        """The plan of frames [start, stop) only (to crop a long video piece by piece)."""
        return CropInfo(self.source_size, self.target_size, self.rects[start:stop], self.boxes[start:stop], self.region)


def _snap16(value: float, limit: int) -> int:
    """Round up to a multiple of 16, but never past ``limit`` (then the largest multiple that fits)."""
    snapped = int(-(-value // 16) * 16)
    if snapped <= limit:
        return max(16, snapped)
    return max(16, limit // 16 * 16) if limit >= 16 else limit


def plan_crop(boxes: torch.Tensor, height: int, width: int, target_width: int, target_height: int,
              padding: float = 0.5, window: int = 0, region: str = "face") -> CropInfo:
    """Plan the crop rectangles.

    boxes: [T,4] face boxes (pixels); padding: extra margin on each side as a fraction of the
    union box's size; window: frames per crop rectangle (0 = one rectangle for the whole clip).
    Target sizes must be multiples of 16."""
    if target_width % 16 or target_height % 16 or target_width <= 0 or target_height <= 0:
        raise ValueError(f"crop size {target_width}x{target_height} must be positive multiples of 16 "
                         f"(e.g. 512x512 or 480x832).")
    if padding < 0:
        raise ValueError(f"padding {padding} must be >= 0.")
    check_region(region)
    count = boxes.shape[0]
    step = count if window <= 0 else window
    aspect = target_width / target_height
    rects = torch.zeros(count, 4, dtype=torch.int64)
    for start in range(0, count, step):
        seg = boxes[start:start + step]
        x0, y0 = seg[:, 0].min().item(), seg[:, 1].min().item()
        x1, y1 = seg[:, 2].max().item(), seg[:, 3].max().item()
        w, h = (x1 - x0) * (1 + 2 * padding), (y1 - y0) * (1 + 2 * padding)
        w, h = max(w, h * aspect), max(h, w / aspect)
        # Shrink uniformly if the frame is too small for the padded box at this aspect.
        fit = min(1.0, width / w, height / h)
        rw, rh = _snap16(w * fit, width), _snap16(h * fit, height)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        left = int(min(max(round(cx - rw / 2), 0), width - rw))
        top = int(min(max(round(cy - rh / 2), 0), height - rh))
        rects[start:start + step] = torch.tensor([left, top, left + rw, top + rh])
    return CropInfo((height, width), (target_height, target_width), rects, boxes.float().clone(), region)


def crop_frames(frames: torch.Tensor, info: CropInfo) -> torch.Tensor:
    """IMAGE [T,H,W,C] -> crops [T,h,w,C] at the target size (16 frames at a time)."""
    if tuple(frames.shape[1:3]) != tuple(info.source_size) or frames.shape[0] != info.rects.shape[0]:
        raise ValueError(f"the video ({frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]}) is not the "
                         f"one this crop was planned for ({info.rects.shape[0]} frames of "
                         f"{info.source_size[1]}x{info.source_size[0]}).")
    th, tw = info.target_size
    out = torch.empty(frames.shape[0], th, tw, frames.shape[3], dtype=torch.float32, device=frames.device)
    for start, stop, (x0, y0, x1, y1) in _segments(info.rects):
        for s in range(start, stop, 16):  # bounded temporaries on long clips
            e = min(s + 16, stop)
            out[s:e] = resize_frames(frames[s:e, y0:y1, x0:x1].float(), th, tw)
    return out


def crop_frame(frame: torch.Tensor, info: CropInfo, t: int) -> torch.Tensor:
    """Source frame ``t`` ([H,W,C] float 0..1) -> its crop [h,w,C] at the target size (as ``crop_frames``)."""
    x0, y0, x1, y1 = (int(v) for v in info.rects[t])
    th, tw = info.target_size
    return resize_frames(frame[None, y0:y1, x0:x1].float(), th, tw)[0]


def _segments(rects: torch.Tensor):
    """Runs of frames sharing one rectangle: yields (start, stop, (x0,y0,x1,y1))."""
    start = 0
    for t in range(1, rects.shape[0] + 1):
        if t == rects.shape[0] or not torch.equal(rects[t], rects[start]):
            yield start, t, tuple(int(v) for v in rects[start])
            start = t


def paste_frames(generated: torch.Tensor, source: torch.Tensor, info: CropInfo, masks: torch.Tensor | None = None,
                 feather_radius: int = 8, colour_match: str = "lab", erode: int = 0, progress=None) -> torch.Tensor:
    """Paste generated crops back into the source video.

    generated: IMAGE [Tg,h,w,3] (any size: resized to each crop rectangle); source: IMAGE [Ts,H,W,C],
    the video that was cropped; masks: optional full-frame MASK [Tm,H',W'] of what to replace (None ->
    the ellipse of ``info.region`` around each face box). The blend is kept inside the crop rectangle.
    Returns IMAGE [min(Tg,Ts),H,W,C]; pixels outside the feathered mask equal the source exactly."""
    if tuple(source.shape[1:3]) != tuple(info.source_size):
        raise ValueError(f"source is {source.shape[2]}x{source.shape[1]} but the crop was planned on "
                         f"{info.source_size[1]}x{info.source_size[0]}: connect the same video to both nodes.")
    height, width = info.source_size
    count = min(generated.shape[0], source.shape[0], info.rects.shape[0])
    out = source[:count].clone()
    matcher = ColourMatcher(colour_match)
    for start, stop, rect in _segments(info.rects[:count]):
        limit = paste_limit(rect, height, width, feather_radius)
        for t in range(start, stop):
            if masks is None:
                mask = ellipse_masks(info.boxes[t:t + 1], height, width, info.region)[0]
            else:
                mask = mask_at(masks, t, height, width)
            paste_frame(out[t], generated[t], rect, mask, limit, feather_radius, matcher, erode)
            if progress is not None:
                progress(1)
    return out


def paste_limit(rect: tuple[int, int, int, int], height: int, width: int, feather_radius: int) -> torch.Tensor:
    """[H,W] {0,1}: where a paste into crop rectangle ``rect`` may reach, so that the feather fades out inside
    the rectangle (outside it there is nothing generated)."""
    x0, y0, x1, y1 = rect
    limit = torch.zeros(height, width)
    limit[y0:y1, x0:x1] = 1
    return dilate(limit[None], -(feather_radius + 1))[0]


def paste_frame(frame: torch.Tensor, generated: torch.Tensor, rect: tuple[int, int, int, int], mask: torch.Tensor,
                limit: torch.Tensor, feather_radius: int, matcher: ColourMatcher, erode: int) -> None:
    """Paste one generated crop ([h,w,>=3], any size: resized to ``rect``) into ``frame`` ([H,W,C], a copy of
    the source frame) in place, through ``mask`` [H,W] cut to ``limit`` (``paste_limit``). Pixels outside the
    feathered mask keep the source's values. THE paste of one frame: ``paste_frames`` and the streamed
    face render (``face_stream``) both call it."""
    x0, y0, x1, y1 = rect
    canvas = frame[..., :3].float().clone()
    canvas[y0:y1, x0:x1] = resize_frames(generated[None, ..., :3].to(frame.device), y1 - y0, x1 - x0)[0]
    blend_frame(frame, canvas, (mask * limit).to(frame.device), feather_radius, matcher, erode)
