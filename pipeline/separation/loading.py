"""Mel-Band RoFormer checkpoint -> MelBandRoformer, strictly: sizes read from the tensors, every key used.

Read through the pack's checkpoint reader (safetensors, or a torch weights file), fp16 or fp32 on disk;
the model computes in fp32, as the reference node does.
"""
from __future__ import annotations

import re

import torch

from ..loading.errors import CheckpointError
from ..loading.reader import open_checkpoint
from .roformer import MelBandRoformer, RoformerConfig

MARKER = "band_split.to_features.0.1.weight"
FIX = ("use Kijai's MelBandRoformer_fp16.safetensors or MelBandRoformer_fp32.safetensors (the Mel-Band RoFormer "
       "vocal model of ComfyUI-MelBandRoFormer) in models/vocal_separation or models/diffusion_models")


def _count(keys, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := regex.fullmatch(k))})


def config_from_state_dict(sd: dict, path=None) -> RoformerConfig:
    """Model sizes from tensor shapes (Kijai's file: dim 384, depth 6, 8 x 64 heads, 60 bands, stereo)."""
    keys = list(sd)
    if MARKER not in sd:
        raise CheckpointError(path, "not a Mel-Band RoFormer model", found=f"{len(keys)} tensors, none named {MARKER}",
                              keys=keys, fix=FIX)
    if any(k.startswith("mask_estimators.1.") for k in keys):
        raise CheckpointError(path, "a multi-stem Mel-Band RoFormer; this node separates vocals with one-stem models",
                              keys=[k for k in keys if k.startswith("mask_estimators.1.")], fix=FIX)
    try:
        attn = "layers.0.0.layers.0.0."
        heads = sd[attn + "to_gates.weight"].shape[0]
        dim_head = sd[attn + "rotary_embed.freqs"].shape[0] * 2
        num_bands = _count(keys, r"band_split\.to_features\.(\d+)\.1\.weight")
        cfg = RoformerConfig(
            dim=sd[MARKER].shape[0], depth=_count(keys, r"layers\.(\d+)\.0\.norm\.gamma"), heads=heads,
            dim_head=dim_head, num_bands=num_bands,
            time_depth=_count(keys, r"layers\.0\.0\.layers\.(\d+)\.0\.to_qkv\.weight"),
            freq_depth=_count(keys, r"layers\.0\.1\.layers\.(\d+)\.0\.to_qkv\.weight"),
            ff_dim=sd["layers.0.0.layers.0.1.net.1.weight"].shape[0],
            mask_hidden=sd["mask_estimators.0.to_freqs.0.0.0.weight"].shape[0],
            mask_depth=_count(keys, r"mask_estimators\.0\.to_freqs\.0\.0\.(\d+)\.weight") - 1)
    except KeyError as e:
        raise CheckpointError(path, "incomplete Mel-Band RoFormer model", found=f"no tensor {e.args[0]}",
                              fix=FIX + "; the file may be truncated or from another version of the model") from None
    # Channels from the first band's input width: 2 (real, imag) x bins x channels.
    bins = int(MelBandRoformer.band_bins(cfg)[0])
    width = sd["band_split.to_features.0.0.gamma"].shape[0]
    if width % (2 * bins) or width // (2 * bins) not in (1, 2):
        raise CheckpointError(path, "band sizes do not match a 44.1 kHz, n_fft 2048 Mel-Band RoFormer",
                              found=f"first band input {width}", expected=f"{4 * bins} (stereo)", fix=FIX)
    return RoformerConfig(**{**cfg.__dict__, "channels": width // (2 * bins)})


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """All tensors of ``path`` as float32 CPU tensors; CheckpointError for unreadable or non-float files."""
    ckpt = open_checkpoint(path)
    sd = {}
    for key in ckpt.keys():
        value = ckpt.get(key)
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise CheckpointError(path, "a quantised or non-float tensor; Mel-Band RoFormer files are fp16/fp32",
                                  found=ckpt.type_name(key), keys=[key], fix=FIX)
        sd[key] = value.float()
    return sd


def build(sd: dict[str, torch.Tensor], path=None, device: torch.device | str = "cpu") -> MelBandRoformer:
    """A state dict -> MelBandRoformer in eval mode on ``device``, loaded strictly."""
    cfg = config_from_state_dict(sd, path)
    with torch.device("meta"):  # no random init of 228 M parameters that the file overwrites
        model = MelBandRoformer(cfg)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise CheckpointError(path, f"{len(missing)} Mel-Band RoFormer tensors missing, {len(unexpected)} unexpected",
                              keys=missing + unexpected, fix=FIX)
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if tuple(sd[k].shape) != tuple(v.shape)]
    if wrong:
        raise CheckpointError(path, "tensor shapes do not fit one Mel-Band RoFormer", found="; ".join(wrong[:3]),
                              fix=FIX)
    model = model.to_empty(device=device)
    model.load_state_dict(sd, strict=True)
    model.reset_buffers()
    return model.eval().requires_grad_(False)


def load_roformer(path, device: torch.device | str = "cpu") -> MelBandRoformer:
    """Checkpoint file -> MelBandRoformer on ``device`` (fp32, eval)."""
    return build(read_state_dict(path), path, device)
