"""Colour correction of each decoded window (official ``match_and_blend_colors`` step, spec §5.8), against the
reference the user chose (``faithful.COLOUR_REFERENCES``) with the chosen method (``color.COLOUR_METHODS``):

* first frame (official): every window is matched to window 0's reference frame (the official code keeps that
  first ``cond_image`` for the whole video);
* each window's reference: window k is matched to its own source keyframe (the frame it is conditioned on);
* global anchor: every window is matched to one target pooled over the keyframes of all windows (the whole
  source's colours; computed once, at flat memory, before window 0's correction).
With an image source (I2V) the three are the same.
"""
from __future__ import annotations

import torch

from ..color import ColourTarget, colour_target
from ..window_plan import Window, WindowPlan
from .faithful import COLOUR_REFERENCES
from .source import Source


class ColourCorrection:
    def __init__(self, reference: str, method: str, strength: float, source: Source, plan: WindowPlan):
        if reference not in COLOUR_REFERENCES:
            raise ValueError(f"colour reference '{reference}' is not one of: {', '.join(COLOUR_REFERENCES)}.")
        self.reference, self.method, self.strength = reference, method, float(strength)
        self.source, self.plan = source, plan
        self._fixed: ColourTarget | None = None

    def _target(self, reference_frame: torch.Tensor) -> ColourTarget:
        if self.reference == COLOUR_REFERENCES[1]:
            return colour_target(reference_frame, self.method)
        if self._fixed is None:
            if self.reference == COLOUR_REFERENCES[0]:
                self._fixed = colour_target(self.source.frames_at([self.plan.windows[0].start])[0], self.method)
            else:
                self._fixed = ColourTarget(self.method)
                seen = set()
                for w in self.plan.windows:
                    index = self.source.index(w.start)
                    if index not in seen:
                        seen.add(index)
                        self._fixed.add(self.source.frames_at([w.start])[0])
        return self._fixed

    def __call__(self, frames: torch.Tensor, window: Window, reference_frame: torch.Tensor,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        """frames [T,H,W,3] 0..1 (CPU) of ``window``; reference_frame [H,W,3] its keyframe -> corrected, on the CPU.
        The transfer runs on ``device``: a 720p window is ~10^8 values per pass."""
        if self.strength == 0.0:
            return frames
        out = self._target(reference_frame).transfer(frames.to(device), self.strength)
        return out.float().cpu().contiguous()
