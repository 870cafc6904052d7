"""Adapt ComfyUI's VAE and CLIP_VISION objects to what the sampler calls (``pipeline/codec.py``), and
lend our own small models (wav2vec2, SAM2) to the compute device under ComfyUI's memory management."""
from __future__ import annotations

from contextlib import contextmanager

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


@contextmanager
def on_device(module: torch.nn.Module, device, offload):
    """``module`` on ``device`` inside the block (other models unloaded to make room for its weights),
    back on ``offload`` afterwards, also on error, with the freed cache returned."""
    host.free_memory(sum(p.numel() * p.element_size() for p in module.parameters()), device)
    module.to(device)
    try:
        yield module
    finally:
        module.to(offload)
        host.soft_empty_cache()
