"""Put generated pixels into the source video through a feathered mask, changing nothing else.

Outside the feathered mask the result is the source tensor's own values (copied, never
recomputed), so background, clothing and bystanders are bit-identical to the input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .colour import ColourMatcher
from .regions import dilate, feather


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """IMAGE [T,h,w,C] -> [T,height,width,C] (bicubic, antialiased when shrinking, clamped 0..1)."""
    if frames.shape[1:3] == (height, width):
        return frames
    x = frames.movedim(-1, 1).float()
    shrink = height < frames.shape[1] or width < frames.shape[2]
    x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=shrink)
    return x.movedim(1, -1).clamp(0, 1)


def mask_size_note(mask: torch.Tensor, height: int, width: int, name: str = "mask") -> str | None:
    """A note for the node when a MASK [..., h, w] is not the frames' ``width`` x ``height``: it is resized
    to them (and stretched when the aspect ratio differs). None when the sizes match."""
    h, w = int(mask.shape[-2]), int(mask.shape[-1])
    if (h, w) == (height, width):
        return None
    stretched = abs(h * width - w * height) > 0.01 * h * width
    return (f"NOTE: {name} is {w}x{h} but the frames are {width}x{height}: it is resized to the frames"
            + (" and STRETCHED (another aspect ratio); draw the mask on these frames" if stretched else "") + ".")


def resize_masks(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """MASK [T,h,w] -> [T,height,width] (bilinear)."""
    if masks.shape[1:] == (height, width):
        return masks.float()
    return F.interpolate(masks[:, None].float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0]


def mask_at(masks: torch.Tensor, t: int, height: int, width: int) -> torch.Tensor:
    """Frame ``t``'s mask from MASK [Tm,h,w] (a shorter batch holds its last mask) -> [height,width]."""
    return resize_masks(masks[min(t, masks.shape[0] - 1)][None], height, width)[0]


def blend_weights(mask: torch.Tensor, feather_radius: int, erode: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame's mask [H,W] -> (alpha [H,W] in 0..1, colour-reference band [H,W] bool).

    The mask is binarised at 0.5, shrunk by ``erode`` pixels, then feathered by ``feather_radius``
    (alpha reaches ``feather_radius`` pixels beyond the eroded mask and is exactly 0 past that).
    The band is the ring of the eroded mask within max(4, feather_radius) pixels of its border."""
    hard = dilate((mask[None] > 0.5).float(), -erode) if erode > 0 else (mask[None] > 0.5).float()
    alpha = feather(hard, feather_radius)[0]
    inner = dilate(hard, -max(4, feather_radius))[0]
    return alpha, (hard[0] > 0) & (inner <= 0)


def composite(generated: torch.Tensor, source: torch.Tensor, masks: torch.Tensor, feather_radius: int = 8,
              colour_match: str = "lab", erode: int = 0, progress=None) -> torch.Tensor:
    """Blend ``generated`` into ``source`` inside ``masks``.

    generated: IMAGE [Tg,h,w,3] (resized to the source size if it differs); source: IMAGE [Ts,H,W,C];
    masks: MASK [Tm,h',w'] (Tm == 1 -> same mask for every frame; else the last one is held).
    colour_match: "none" | "lab" | "histogram" — the generated frame is first matched to the
    source over the band inside the mask's border (correction smoothed over frames). Returns IMAGE [min(Tg,Ts),H,W,C] float32
    on the source's device; pixels where the feathered alpha is 0 equal the source exactly.
    ``progress(n)`` is called once per frame.
    """
    if generated.dim() != 4 or source.dim() != 4:
        raise ValueError(f"generated and source must be IMAGE [T,H,W,C]; got {tuple(generated.shape)} and "
                         f"{tuple(source.shape)}.")
    if masks.dim() == 2:
        masks = masks[None]
    count = min(generated.shape[0], source.shape[0])
    height, width = source.shape[1:3]
    out = source[:count].clone()
    matcher = ColourMatcher(colour_match)
    for t in range(count):
        mask = mask_at(masks, t, height, width)
        gen = resize_frames(generated[t:t + 1].to(source.device), height, width)[0]
        blend_frame(out[t], gen, mask.to(source.device), feather_radius, matcher, erode)
        if progress is not None:
            progress(1)
    return out


def blend_frame(frame: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor, feather_radius: int,
                matcher: ColourMatcher, erode: int) -> None:
    """Blend one generated frame into ``frame`` (a copy of the source frame) in place.

    frame: [H,W,C] source pixels, overwritten only where alpha > 0; generated: [H,W,>=3]; mask: [H,W].
    Work is confined to the mask's bounding box plus the feather margin (a face is a small part of
    the frame); nothing outside that box is read or written."""
    inside = mask > 0.5
    rows, cols = torch.nonzero(inside.any(dim=1)).flatten(), torch.nonzero(inside.any(dim=0)).flatten()
    if len(rows) == 0:
        return
    margin = feather_radius + 1
    y0, y1 = max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, mask.shape[0])
    x0, x1 = max(int(cols[0]) - margin, 0), min(int(cols[-1]) + 1 + margin, mask.shape[1])
    alpha, band = blend_weights(mask[y0:y1, x0:x1], feather_radius, erode)
    roi = frame[y0:y1, x0:x1, :3]
    src = roi.float()
    gen = matcher(generated[y0:y1, x0:x1, :3].float(), src, band)
    where = alpha > 0
    a = alpha[where][:, None]
    roi[where] = (src[where] * (1 - a) + gen[where] * a).to(frame.dtype)
