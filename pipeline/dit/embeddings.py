"""Time, image and output layers of the DiT (official module names, official precision)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import DiTConfig
from .layers import Fp32Linear, LayerNorm


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t [B] (continuous, 0..1000) -> fp32 [B, dim] = [cos(t w_k), sin(t w_k)], w_k = 10000^(-k/(dim/2)).

    float64 as the official code: at t ~ 1000 fp32 angles would be off by ~6e-5.
    """
    half = dim // 2
    angles = torch.outer(t.double(), 10000.0 ** (-torch.arange(half, dtype=torch.float64, device=t.device) / half))
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float()


class MLPProj(nn.Module):
    """CLIP tokens [B, 257, 1280] -> [B, 257, D]: LN, Linear, GELU, Linear, LN (eps 1e-5, as nn.LayerNorm)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.proj = nn.Sequential(LayerNorm(cfg.clip_dim), nn.Linear(cfg.clip_dim, cfg.clip_dim), nn.GELU(),
                                  nn.Linear(cfg.clip_dim, cfg.dim), LayerNorm(cfg.dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Head(nn.Module):
    """Final LN + modulation (from the time embedding e, not e0) + Linear, in fp32."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = Fp32Linear(cfg.dim, math.prod(cfg.patch_size) * cfg.out_dim)
        self.modulation = nn.Parameter(torch.empty(1, 2, cfg.dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x [B, S, D] compute dtype, e [B, D] fp32 -> [B, S, prod(patch)*out_dim] fp32."""
        shift, scale = (self.modulation.float() + e[:, None]).chunk(2, dim=1)
        return self.head(torch.addcmul(shift, self.norm(x), 1 + scale))
