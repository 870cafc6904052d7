"""Face masks for a whole video: face box -> SAM2 segmentation (or a box ellipse) -> region ->
dilation -> temporal smoothing.

Box priority: a user MASK, else a typed box, else OpenCV's Haar detector (tracked and smoothed).
With SAM2, frames where it loses the face fall back to the box ellipse, so no frame is empty.
"""
from __future__ import annotations

from typing import Callable

import torch

from .face_box import boxes_from_mask, track_faces
from .regions import check_region, dilate, ellipse_masks, restrict_to_region, temporal_smooth


def _follow(box: torch.Tensor, masks: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Move a frame-0 box with the segmented face: shift by the mask centroid's motion. -> [T,4]."""
    count, height, width = masks.shape
    ys = torch.arange(height, dtype=torch.float32)[None, :, None]
    xs = torch.arange(width, dtype=torch.float32)[None, None, :]
    area = masks.sum(dim=(1, 2))
    valid = present & (area > 0)
    cx = (masks * xs).sum(dim=(1, 2)) / area.clamp(min=1)
    cy = (masks * ys).sum(dim=(1, 2)) / area.clamp(min=1)
    centre = torch.stack([cx, cy], dim=1)
    if not bool(valid.any()):
        return box[None].expand(count, 4).clone()
    idx = torch.nonzero(valid).flatten()
    centre = centre[idx[(torch.arange(count)[:, None] - idx[None]).abs().argmin(dim=1)]]  # hold nearest valid
    shift = centre - centre[0]
    return box[None] + torch.cat([shift, shift], dim=1)


def face_masks(frames: torch.Tensor, *, sam=None, user_mask: torch.Tensor | None = None,
               box: tuple[float, float, float, float] | None = None, points=(), region: str = "face",
               dilation: int = 0, smoothing: int = 5, detect_every: int = 5, device="cpu",
               progress_factory: Callable[[int], Callable[[int], None]] | None = None):
    """Face masks for ``frames``.

    frames: IMAGE [T,H,W,C] 0..1; sam: a loaded Sam2Model or None (box ellipses);
    user_mask: MASK [B,h,w] whose bounding box is the face box (per frame when B == T);
    box: (x0,y0,x1,y1) pixels on frame 0; points: (x, y, label) clicks for SAM2 on frame 0;
    region: "face" | "lower_face" | "mouth"; dilation: pixels (negative shrinks);
    smoothing: frames of the temporal moving average (1 = off); detect_every: Haar key-frame step.
    progress_factory(total) -> update(n) callable, called once with the work count.
    Returns (masks [T,H,W] float32 0..1 CPU, boxes [T,4], report: str).
    """
    check_region(region)
    count, height, width = frames.shape[:3]
    detect = user_mask is None and box is None
    keys = len(set(range(0, count, max(1, detect_every))) | {count - 1}) if detect else 0
    update = progress_factory(keys + (count if sam is not None else 0)) if progress_factory else None
    static = False
    if user_mask is not None:
        boxes = boxes_from_mask(user_mask, count, height, width)
        source = "the connected mask"
        static = user_mask.shape[0] == 1 if user_mask.dim() == 3 else True
    elif box is not None:
        boxes = torch.tensor(box, dtype=torch.float32)[None].expand(count, 4).clone()
        source, static = "the typed box", True
    else:
        boxes = track_faces(frames, detect_every=detect_every, progress=update)
        source = "OpenCV face detection"
    if sam is None:
        masks = ellipse_masks(boxes, height, width, region)
        report = f"{count} frames: {region} ellipse from {source} (no SAM2 model connected)."
    else:
        from .sam2_video import segment_face
        masks, present = segment_face(sam, frames, boxes[0], points, device=device, progress=update)
        if static:
            boxes = _follow(boxes[0], masks, present)
        lost = ~present | (masks.sum(dim=(1, 2)) == 0)
        masks = restrict_to_region(masks, boxes, region)
        if bool(lost.any()):
            masks[lost] = ellipse_masks(boxes[lost], height, width, region)
        report = (f"{count} frames: SAM2 {sam.name} {region} mask prompted by {source}; "
                  f"{int(lost.sum())} frame(s) where SAM2 lost the face use the box ellipse.")
    masks = temporal_smooth(dilate(masks, dilation), smoothing)
    return masks.clamp(0, 1), boxes, report
