"""DPM-Solver++(2M) for flow matching (data prediction; alpha = 1 - s, sigma = s)."""
from __future__ import annotations

import math

import torch


def _lam(s: float) -> float:
    """log(alpha/sigma); -inf at s = 1 (pure noise), +inf at s = 0."""
    if s <= 0.0:
        return math.inf
    if s >= 1.0:
        return -math.inf
    return math.log((1.0 - s) / s)


class DPMpp2M:
    """Second-order multistep; first order on the first step (no history) and on the last (s_next = 0,
    where the exact update is the clean estimate itself)."""

    def __init__(self, t: torch.Tensor, generator: torch.Generator | None = None):
        self.s = [float(v) for v in (t.to(torch.float64) / 1000)]
        self.prev_x0 = None
        self.prev_h = None

    def step(self, x: torch.Tensor, v: torch.Tensor, i: int) -> torch.Tensor:
        s, s_next = self.s[i], self.s[i + 1]
        x0 = x - s * v
        if s_next <= 0.0:
            self.prev_x0, self.prev_h = None, None
            return x0
        h = _lam(s_next) - _lam(s)
        d = x0
        if self.prev_x0 is not None and math.isfinite(h) and math.isfinite(self.prev_h):
            r = self.prev_h / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * self.prev_x0
        out = (s_next / s) * x - (1 - s_next) * math.expm1(-h) * d
        self.prev_x0, self.prev_h = x0, h
        return out
