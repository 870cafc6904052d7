"""Adapt ComfyUI's VAE and CLIP_VISION objects to what the sampler calls (``pipeline/codec.py``). Our own models
(DiT, wav2vec2, SAM2) reach the compute device through ComfyUI's memory manager: ``managed_model``."""
from __future__ import annotations

import torch

from ..pipeline.codec import clip_pixels, denormalize_latent, normalize_latent
from . import host


class ComfyVAE:
    """Core Wan 2.1 VAE (``VAELoader``): ``encode`` returns raw means [1,16,t,h,w]; we normalise them
    exactly as the official wrapper (and core's Wan21 ``process_in``) does."""

    def __init__(self, vae):
        self.vae = vae

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return normalize_latent(self.vae.encode(frames[..., :3]).float()[0].cpu())

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """[16,t,h,w] -> [T,H,W,3] 0..1 (core decodes [1,16,t,h,w] to [1,T,H,W,3], clamped)."""
        out = self.vae.decode(denormalize_latent(latent.float().cpu())[None])
        return out.reshape(-1, *out.shape[-3:]).float()


class ComfyClipVision:
    """Core CLIP vision (clip_vision_h): the official preprocessing (bicubic straight to 224, no crop, no
    rounding: core ``CLIPVisionEncode`` antialiases, rounds and by default centre-crops, so we do not use
    it), then the core model's penultimate hidden states [1,257,1280]."""

    def __init__(self, clip_vision):
        self.clip_vision = clip_vision

    def clip(self, frame: torch.Tensor) -> torch.Tensor:
        cv = self.clip_vision
        host.load_model(cv.patcher)
        device = cv.patcher.load_device
        with torch.no_grad():
            out = cv.model(pixel_values=clip_pixels(frame).to(device), intermediate_output=-2)
        return out[1].float().cpu()
