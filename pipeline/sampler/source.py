"""The source video (or image) as the loop sees it: frames looked up by output-frame timestamp.

Output frame ``f`` (at the audio's fps) shows source frame ``floor(f/fps * source_fps)`` (window_plan's
``source_frame_index``, the one owner of that rule, also for hold/ping-pong past the end), so
24/30/60 fps sources stay in sync.
A one-frame source is an image (I2V): every lookup gives it.
"""
from __future__ import annotations

import torch

from ..resolution import resize_and_crop
from ..window_plan import SOURCE_END, source_frame_index


class Source:
    """frames: [N,H,W,3] float 0..1 (kept where it is, usually CPU); crops to (th, tw) on lookup."""

    def __init__(self, frames: torch.Tensor, source_fps: float, fps: float, th: int, tw: int, end: str = "hold"):
        if frames.dim() != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            raise ValueError(f"source must be an IMAGE batch [N,H,W,3] with at least one frame (got {tuple(frames.shape)}).")
        if end not in SOURCE_END:
            raise ValueError(f"source_end must be one of {SOURCE_END} (got '{end}').")
        if not source_fps > 0:
            raise ValueError(f"source_fps must be > 0 (got {source_fps}); use the video's frame rate.")
        self.frames, self.source_fps, self.fps, self.th, self.tw, self.end = frames, float(source_fps), float(fps), th, tw, end

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def is_image(self) -> bool:
        return self.num_frames == 1

    def index(self, frame: int) -> int:
        """Source frame index shown at output frame ``frame``."""
        return source_frame_index(frame, self.fps, self.source_fps, self.num_frames, self.end)

    def frames_at(self, frames: range | list[int]) -> torch.Tensor:
        """[len, th, tw, 3] float32 0..1: the cropped source frames shown at the given output frames."""
        idx = [self.index(f) for f in frames]
        return resize_and_crop(self.frames[idx], self.th, self.tw)
