"""Two-speaker region masks at latent resolution (spec §5.5.8): speaker 1, speaker 2, background.

Built in source-image pixels (h x w of the first reference frame), then cover-resized and cropped like the
frames (nearest), nearest-resized to the latent grid and thresholded at > 0 -> [3, lat_h, lat_w] float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .resolution import resize_and_crop_mask

FACE_SCALE = 0.05


def default_layout(src_h: int, src_w: int, face_scale: float = FACE_SCALE) -> torch.Tensor:
    """Official default: speaker 1 in the left half, speaker 2 in the right, each inset by ``face_scale``.
    Returns [2, src_h, src_w] {0,1}."""
    half = src_w // 2
    r0, r1 = int(face_scale * src_h), int((1 - face_scale) * src_h)
    c0, c1 = int(face_scale * half), int((1 - face_scale) * half)
    masks = torch.zeros(2, src_h, src_w)
    masks[0, r0:r1, c0:c1] = 1
    masks[1, r0:r1, half + c0:half + c1] = 1
    return masks


def bbox_layout(src_h: int, src_w: int, boxes: list[list[float]]) -> torch.Tensor:
    """Official bbox JSON: ``[x_min, y_min, x_max, y_max]`` applied as ``mask[x_min:x_max, y_min:y_max]``
    ("x" indexes rows, as the official code does). Returns [2, src_h, src_w]."""
    if len(boxes) != 2 or any(len(b) != 4 for b in boxes):
        raise ValueError(f"bbox needs two boxes of 4 numbers [x_min, y_min, x_max, y_max] (got {boxes}).")
    masks = torch.zeros(2, src_h, src_w)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, int(x0):int(x1), int(y0):int(y1)] = 1
    return masks


def latent_masks(person: torch.Tensor, th: int, tw: int, lat_h: int, lat_w: int) -> torch.Tensor:
    """person: [2, src_h, src_w] (default/bbox layout, or user MASKs > 0) -> [3, lat_h, lat_w] float32 {0,1}
    (speaker 1, speaker 2, background = where no speaker is)."""
    if person.dim() != 3 or person.shape[0] != 2:
        raise ValueError(f"speaker masks must be [2, H, W] (got {tuple(person.shape)}).")
    person = (person > 0).float()
    background = 1.0 - person.amax(dim=0, keepdim=True)
    masks = resize_and_crop_mask(torch.cat([person, background]), th, tw)
    masks = F.interpolate(masks[None], size=(lat_h, lat_w), mode="nearest")[0]
    return (masks > 0).float()
