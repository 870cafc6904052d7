"""What the sampler needs from a VAE and a CLIP vision model, as small protocols, plus tiny deterministic
stand-ins for CPU tests and smoke benches.

Frames are ComfyUI-style ``[T,H,W,3]`` float 0..1 RGB; latents are the normalised Wan 2.1 latents
``[16,t,h,w]`` (``(mu - mean)/std``), ``t = 1 + (T-1)//4``, ``h, w = H/8, W/8``.
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

LATENT_CHANNELS = 16
CLIP_TOKENS, CLIP_DIM = 257, 1280
# Official Wan 2.1 VAE latent normalisation (wan/modules/vae.py:629-636): latent = (mu - MEAN) / STD.
WAN21_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
              0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
             3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize_latent(mu: torch.Tensor) -> torch.Tensor:
    """Raw VAE mean [16,t,h,w] -> the normalised latent the DiT sees."""
    shape = (LATENT_CHANNELS, 1, 1, 1)
    return (mu - torch.tensor(WAN21_MEAN, device=mu.device).view(shape)) / torch.tensor(WAN21_STD, device=mu.device).view(shape)


def denormalize_latent(latent: torch.Tensor) -> torch.Tensor:
    shape = (LATENT_CHANNELS, 1, 1, 1)
    return latent * torch.tensor(WAN21_STD, device=latent.device).view(shape) + torch.tensor(WAN21_MEAN, device=latent.device).view(shape)


def clip_pixels(frame: torch.Tensor) -> torch.Tensor:
    """Official CLIP preprocessing (``wan/modules/clip.py:527-542``): [H,W,3] 0..1 -> [1,3,224,224] float32.

    The frame in [-1,1] is resized bicubic (no antialias) straight to 224x224 (no aspect kept, no crop,
    no clamp, no uint8 rounding), mapped back with ``x*0.5+0.5`` and normalised with the CLIP mean/std.
    (ComfyUI's ``clip_preprocess`` differs: antialiased, rounded to 1/255, and with ``crop`` a centre crop.)"""
    x = frame.float().permute(2, 0, 1)[None] * 2 - 1
    x = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False) * 0.5 + 0.5
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class VideoCodec(Protocol):
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """[T,H,W,3] 0..1 -> normalised latent [16, 1+(T-1)//4, H/8, W/8] float32 (causal: frame 0 alone)."""

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """[16,t,h,w] -> [1+4(t-1), 8h, 8w, 3] float32 0..1."""


class ImageEncoder(Protocol):
    def clip(self, frame: torch.Tensor) -> torch.Tensor:
        """[H,W,3] 0..1 -> CLIP vision penultimate hidden states [1,257,1280] float32."""


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
