"""How one decoded video frame becomes an IMAGE frame: the one place for the pixel conversion, the display-matrix
rotation and the crop of a core VIDEO, so the streamed reader gives exactly what the host's ``get_components()``
gives for the same frame.

ComfyUI has changed this over releases; the host adapter tells which rule applies (``nodes/video_edits``):

- ``"rgb24"`` (0.3.64, 0.8.0): ``to_ndarray("rgb24") / 255`` for every pixel format.
- ``"float"`` (later releases): 8-bit full-range formats (``yuvj4xxp``, ``rgb24``, ``rgba``, ``pal8``) as above;
  every other format (``yuv420p`` H.264, 10-bit, ...) converted straight to float planar RGB (``gbrpf32le``), for a
  frame whose width is not a multiple of 32 through a filter graph that first pads both sides to a multiple of 32
  (border smeared), because the converter's result at the right edge depends on that alignment.

Either way the frame is then turned upright (``frame.rotation``: the display matrix, counter-clockwise degrees, in
quarter turns as core counts them) and cropped. A crop is an op ``(kind, x, y, width, height)`` on the upright
frame: ``"crop"`` is an exact slice, ``"crop_aligned"`` (Load Video / Crop Video) is first clamped to the frame and
snapped to even numbers (``aligned_rect``). Several ops apply in order.
"""
from __future__ import annotations

import numpy as np
import torch

PIXEL_RULES = ("rgb24", "float")
CROP_KINDS = ("crop", "crop_aligned")
# 8-bit full-range formats the "float" rule still reads as bytes / 255.
_BYTE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p", "rgb24", "rgba", "pal8"}


def rotation_turns(frame) -> int:
    """Counter-clockwise quarter turns that make ``frame`` upright (0..3)."""
    rotation = getattr(frame, "rotation", 0) or 0
    return int(rotation // 90) % 4


def aligned_rect(x: int, y: int, width: int, height: int, frame_w: int, frame_h: int):
    """(x, y, w, h) of a Load Video crop on a ``frame_w`` x ``frame_h`` frame, or None for no crop: the corner clamped
    into the frame and rounded down to even, the size clipped to the frame and rounded down to even; an empty or
    whole-frame rectangle is no crop."""
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        return None
    x = min(max(int(x), 0), frame_w - 1)
    y = min(max(int(y), 0), frame_h - 1)
    x, y = x - x % 2, y - y % 2
    width, height = min(width, frame_w - x), min(height, frame_h - y)
    if (x, y, width, height) == (0, 0, frame_w, frame_h):
        return None
    width, height = width - width % 2, height - height % 2
    if width <= 0 or height <= 0:
        return None
    return x, y, width, height


def apply_crops(img, crops) -> np.ndarray:
    """``img`` [H,W,C] (numpy) after the crop ops in order (see the module docstring)."""
    for kind, x, y, w, h in crops:
        if kind == "crop_aligned":
            rect = aligned_rect(x, y, w, h, img.shape[1], img.shape[0])
            if rect is None:
                continue
            x, y, w, h = rect
        img = img[int(y):int(y) + int(h), int(x):int(x) + int(w)]
    return img


def upright(img: np.ndarray, turns: int) -> np.ndarray:
    return np.rot90(img, k=turns, axes=(0, 1)) if turns else img


def _has_alpha(frame) -> bool:
    return frame.format.name == "pal8" or any(c.is_alpha for c in frame.format.components)


class Converter:
    """Pixels of decoded frames under one rule; keeps the alignment filter graph of the "float" rule."""

    def __init__(self, rule: str = "rgb24"):
        if rule not in PIXEL_RULES:
            raise ValueError(f"pixel rule must be one of {PIXEL_RULES} (got {rule!r}).")
        self.rule = rule
        self._graph = None  # (key, source, sink) of the padding graph

    def bytes(self, frame) -> np.ndarray:
        """[H,W,3] uint8 RGB, not yet rotated or cropped."""
        return frame.to_ndarray(format="rgb24")

    def floats(self, frame) -> torch.Tensor:
        """[H,W,3] float32 0..1 as the host's ``get_components`` computes it, not yet rotated or cropped."""
        name = frame.format.name
        alpha = _has_alpha(frame)
        if self.rule == "rgb24" or name in _BYTE_FORMATS:
            img = frame.to_ndarray(format="rgba" if alpha and self.rule == "float" else "rgb24")
            return torch.from_numpy(np.ascontiguousarray(img[..., :3])).float() / 255.0
        fmt = "gbrapf32le" if alpha else "gbrpf32le"
        if frame.width % 32:
            img = np.ascontiguousarray(self._padded(frame).to_ndarray(format=fmt)[:frame.height, :frame.width])
        else:
            img = frame.to_ndarray(format=fmt)
        return torch.from_numpy(np.ascontiguousarray(img[..., :3]))

    def _padded(self, frame):
        import av
        key = (frame.width, frame.height, frame.format.name)
        if self._graph is None or self._graph[0] != key:
            pad_w, pad_h = -(-frame.width // 32) * 32, -(-frame.height // 32) * 32
            graph = av.filter.Graph()
            source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                      time_base=frame.time_base or 1)
            pad = graph.add("pad", f"{pad_w}:{pad_h}:0:0")
            fill = graph.add("fillborders", f"left=0:right={pad_w - frame.width}:top=0:"
                                            f"bottom={pad_h - frame.height}:mode=smear")
            sink = graph.add("buffersink")
            source.link_to(pad)
            pad.link_to(fill)
            fill.link_to(sink)
            graph.configure()
            self._graph = (key, source, sink, graph)
        self._graph[1].push(frame)
        return self._graph[2].pull()
