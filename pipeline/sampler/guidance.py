"""Classifier-free guidance over text and audio, exactly as the official loop (``wan/multitalk.py:700-756``),
with optional APG (``multitalk_utils.py:316-357``).

Branches (model outputs, fp32, same shape [B?,16,T,h,w] or [16,T,h,w]):
  * text_scale == 1 (``math.isclose``): ``cond``, ``drop_audio`` -> ``v = drop_audio + a*(cond - drop_audio)``
  * otherwise: ``cond``, ``drop_text``, ``uncond`` -> ``v = uncond + s*(cond - drop_text) + a*(drop_text - uncond)``
APG replaces each difference by its momentum-averaged, norm-clipped, orthogonal-to-``cond`` part:
  ``v = cond + (s-1)*APG(cond - drop_text) + (a-1)*APG(drop_text - uncond)`` (or only the audio term).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_DIMS = (-1, -2, -3, -4)  # the official norms cover C,T,H,W of an unbatched latent


def branch_names(text_scale: float) -> tuple[str, ...]:
    """The model calls one step needs, in the official order."""
    return ("cond", "drop_audio") if math.isclose(text_scale, 1.0) else ("cond", "drop_text", "uncond")


@dataclass
class APG:
    """Adaptive projected guidance with a per-window momentum buffer (create one per window).

    ``momentum`` (official CLI default -0.75): ``r <- diff + momentum*r`` (from r = 0), then the norm of
    ``r`` over all of C,T,H,W is clipped to ``norm_threshold`` (55), then the part parallel to ``cond``
    is removed (eta = 0), the projection computed in float64 as the official code does."""

    momentum: float = -0.75
    norm_threshold: float = 55.0
    running: torch.Tensor | None = None

    def __call__(self, diff: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.running = diff if self.running is None else diff + self.momentum * self.running
        diff = self.running
        if self.norm_threshold > 0:
            norm = diff.norm(p=2, dim=_DIMS, keepdim=True)
            diff = diff * torch.minimum(torch.ones_like(norm), self.norm_threshold / norm)
        dtype = diff.dtype
        d64, c64 = diff.double(), cond.double()
        unit = c64 / c64.norm(p=2, dim=_DIMS, keepdim=True)
        parallel = (d64 * unit).sum(dim=_DIMS, keepdim=True) * unit
        return (d64 - parallel).to(dtype)


class Guidance:
    """Combines the branch outputs of one step. One instance per window (APG buffers are per window)."""

    def __init__(self, text_scale: float, audio_scale: float, apg: bool = False,
                 apg_momentum: float = -0.75, apg_norm_threshold: float = 55.0):
        self.text_scale = float(text_scale)
        self.audio_scale = float(audio_scale)
        self.branches = branch_names(self.text_scale)
        self.apg_text = APG(apg_momentum, apg_norm_threshold) if apg else None
        self.apg_audio = APG(apg_momentum, apg_norm_threshold) if apg else None

    def __call__(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        s, a = self.text_scale, self.audio_scale
        cond = out["cond"]
        if len(self.branches) == 2:
            drop = out["drop_audio"]
            if self.apg_audio is None:
                return drop + a * (cond - drop)
            return cond + (a - 1) * self.apg_audio(cond - drop, cond)
        drop_text, uncond = out["drop_text"], out["uncond"]
        if self.apg_text is None:
            return uncond + s * (cond - drop_text) + a * (drop_text - uncond)
        text = self.apg_text(cond - drop_text, cond)
        audio = self.apg_audio(drop_text - uncond, cond)
        return cond + (s - 1) * text + (a - 1) * audio
