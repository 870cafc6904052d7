"""The official Euler flow step (``wan/multitalk.py:757-764``), bit for bit in float32."""
from __future__ import annotations

import torch


class Euler:
    """``dt = (t_i - t_{i+1})/1000`` (float32, shape [1]); ``x + (-v) * dt`` (the code negates v, then adds)."""

    def __init__(self, t: torch.Tensor, generator: torch.Generator | None = None):
        self.t = t.to(torch.float32)

    def step(self, x: torch.Tensor, v: torch.Tensor, i: int) -> torch.Tensor:
        dt = ((self.t[i] - self.t[i + 1]) / 1000).reshape(1).to(x.device)
        return x + (-v) * dt
