"""LCM sampling for step-distilled LoRAs: jump to the clean estimate, re-noise to the next level."""
from __future__ import annotations

import torch


class LCM:
    """``x0 = x - s_i v``; ``x_next = (1 - s_{i+1}) x0 + s_{i+1} * noise`` (fresh noise from the window's
    generator; ``x0`` itself at the end)."""

    def __init__(self, t: torch.Tensor, generator: torch.Generator | None = None):
        self.s = t.to(torch.float32) / 1000
        self.generator = generator

    def step(self, x: torch.Tensor, v: torch.Tensor, i: int) -> torch.Tensor:
        s, s_next = self.s[i].item(), self.s[i + 1].item()
        x0 = x - s * v
        if s_next <= 0.0:
            return x0
        noise = torch.randn(x.shape, generator=self.generator, dtype=torch.float32,
                            device=self.generator.device if self.generator is not None else "cpu").to(x.device)
        return (1 - s_next) * x0 + s_next * noise
