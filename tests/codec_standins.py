"""Tiny deterministic stand-ins for the Wan VAE and CLIP vision (CPU tests and smoke benches), with the
shapes and causality the sampler expects (``pipeline/codec.py``). Not shipped in the pack."""
from __future__ import annotations

import torch
import torch.nn.functional as F

LATENT_CHANNELS, CLIP_DIM = 16, 1280


def _fixed_matrix(rows: int, cols: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float()


class TinyCodec:
    """Deterministic VAE-shaped codec: causal temporal pooling (frame 0 alone, then groups of 4), 8x8
    average pooling, and a fixed 3 -> 16 linear map (decode: its pseudo-inverse, nearest upsampling)."""

    def __init__(self, seed: int = 0):
        self.to_latent = _fixed_matrix(LATENT_CHANNELS, 3, seed)
        self.from_latent = torch.linalg.pinv(self.to_latent)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        t, h, w, c = frames.shape
        if c != 3 or h % 8 or w % 8:
            raise ValueError(f"TinyCodec.encode needs [T,H,W,3] with H, W multiples of 8 (got {tuple(frames.shape)}).")
        x = frames.float().permute(3, 0, 1, 2) * 2 - 1                          # [3,T,H,W] in [-1,1]
        x = F.avg_pool2d(x, 8)                                                 # [3,T,h,w]
        groups = [x[:, :1]] + [x[:, 1 + 4 * k:5 + 4 * k].mean(1, keepdim=True) for k in range((t - 1) // 4)]
        x = torch.cat(groups, dim=1)
        return torch.einsum("oc,cthw->othw", self.to_latent.to(x.device), x)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        x = torch.einsum("co,othw->cthw", self.from_latent.to(latent.device), latent.float())
        x = torch.cat([x[:, :1], x[:, 1:].repeat_interleave(4, dim=1)], dim=1)
        x = x.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
        return ((x.clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).contiguous()


class TinyClip:
    """Deterministic CLIP-shaped encoder: a 16x16 bilinear thumbnail, a fixed 3 -> 1280 map per patch,
    the mean as the class token -> [1,257,1280]."""

    def __init__(self, seed: int = 1):
        self.proj = _fixed_matrix(CLIP_DIM, 3, seed)

    def clip(self, frame: torch.Tensor) -> torch.Tensor:
        x = frame.float().permute(2, 0, 1)[None] * 2 - 1
        x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)[0].flatten(1)  # [3,256]
        tokens = (self.proj.to(x.device) @ x).T                                                # [256,1280]
        return torch.cat([tokens.mean(0, keepdim=True), tokens])[None]
