"""Face masks for a whole video: face box -> SAM2 segmentation (or a box ellipse) -> region ->
dilation -> temporal smoothing.

Box priority: a user MASK, else a typed box, else OpenCV's Haar detector (tracked and smoothed).
With SAM2, frames where it loses the face fall back to the box ellipse, so no frame is empty.
"""
from __future__ import annotations

from typing import Callable

import torch

from .face_box import boxes_from_mask, check_box_in_frame, hold_nearest, key_frames, track_faces
from .regions import check_region, dilate, ellipse_masks, restrict_to_region, temporal_smooth_

CHUNK = 16  # frames processed together by the per-frame steps (bounds the temporaries)


def _follow(box: torch.Tensor, masks: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Move a frame-0 box with the segmented face: shift by the mask centroid's motion. -> [T,4]."""
    count, height, width = masks.shape
    ys = torch.arange(height, dtype=torch.float32)
    xs = torch.arange(width, dtype=torch.float32)
    area = masks.sum(dim=(1, 2))
    valid = present & (area > 0)
    cx = (masks.sum(dim=1) * xs).sum(dim=1) / area.clamp(min=1)
    cy = (masks.sum(dim=2) * ys).sum(dim=1) / area.clamp(min=1)
    centre = torch.stack([cx, cy], dim=1)
    if not bool(valid.any()):
        return box[None].expand(count, 4).clone()
    centre = hold_nearest(centre, valid)
    shift = centre - centre[0]
    return box[None] + torch.cat([shift, shift], dim=1)


def sam2_region_masks_(masks: torch.Tensor, present: torch.Tensor, boxes: torch.Tensor, region: str,
                       dilation: int) -> torch.Tensor:
    """In place: SAM2's face masks [T,H,W] {0,1} -> the ``region`` part of each, the box ellipse where SAM2 lost
    the face (``present`` [T] False, or an empty mask), dilated. boxes: [T,4]. Returns lost [T] bool."""
    count, height, width = masks.shape
    lost = ~present | (masks.sum(dim=(1, 2)) == 0)
    for s in range(0, count, CHUNK):
        part, gone = restrict_to_region(masks[s:s + CHUNK], boxes[s:s + CHUNK], region), lost[s:s + CHUNK]
        if bool(gone.any()):
            part[gone] = ellipse_masks(boxes[s:s + CHUNK][gone], height, width, region)
        masks[s:s + CHUNK] = dilate(part, dilation)
    return lost


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
    keys = len(key_frames(count, detect_every)) if detect else 0
    update = progress_factory(keys + (count if sam is not None else 0)) if progress_factory else None
    static = False
    if user_mask is not None:
        boxes = boxes_from_mask(user_mask, count, height, width)
        source = "the connected mask"
        static = user_mask.shape[0] == 1 if user_mask.dim() == 3 else True
    elif box is not None:
        check_box_in_frame(box, height, width)
        boxes = torch.tensor(box, dtype=torch.float32)[None].expand(count, 4).clone()
        source, static = "the typed box", True
    else:
        boxes = track_faces(frames, detect_every=detect_every, progress=update)
        source = "OpenCV face detection"
    if sam is None:
        masks = torch.empty(count, height, width)
        for s in range(0, count, CHUNK):
            masks[s:s + CHUNK] = dilate(ellipse_masks(boxes[s:s + CHUNK], height, width, region), dilation)
        report = f"{count} frames: {region} ellipse from {source} (no SAM2 model connected)."
    else:
        from .sam2_video import segment_face
        masks, present = segment_face(sam, frames, boxes[0], points, device=device, progress=update)
        if static:
            boxes = _follow(boxes[0], masks, present)
        lost = sam2_region_masks_(masks, present, boxes, region, dilation)
        report = (f"{count} frames: SAM2 {sam.name} {region} mask prompted by {source}; "
                  f"{int(lost.sum())} frame(s) where SAM2 lost the face use the box ellipse.")
    return temporal_smooth_(masks, smoothing).clamp_(0, 1), boxes, report
