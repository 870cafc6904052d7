"""Conventions between the sampler and the VAE / CLIP vision model: latent normalisation and CLIP
preprocessing.

The sampler calls ``codec.encode(frames [T,H,W,3] 0..1) -> latent [16, 1+(T-1)//4, H/8, W/8]`` (causal:
frame 0 alone), ``codec.decode(latent) -> [1+4(t-1), 8h, 8w, 3] 0..1`` and ``clip.clip(frame [H,W,3]) ->
[1,257,1280]`` (penultimate CLIP vision hidden states). ``nodes/adapters.py`` wraps ComfyUI's VAE and
CLIP_VISION this way; tests use small deterministic stand-ins (``tests/codec_standins.py``). Latents are the
normalised Wan 2.1 latents ``(mu - mean)/std``.
"""
from __future__ import annotations

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
