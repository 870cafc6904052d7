"""Colour correction: the official Lab mean/std transfer (``multitalk_utils.match_and_blend_colors``).

Own torch port of skimage's sRGB <-> CIE-Lab (D65, 2 degree observer) conversions, computed in float32 as skimage does for float32 images.
"""
from __future__ import annotations

import torch

# float32 like the official code (skimage keeps float32 input in float32); fast on the GPU.
DTYPE = torch.float32
_XYZ_FROM_RGB = torch.tensor([[0.412453, 0.357580, 0.180423],
                              [0.212671, 0.715160, 0.072169],
                              [0.019334, 0.119193, 0.950227]], dtype=DTYPE)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB.double()).to(DTYPE)
FLAT_STD = 1e-4
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=DTYPE)


def rgb2lab(rgb: torch.Tensor) -> torch.Tensor:
    """[..., 3] sRGB in [0,1] -> [..., 3] Lab (float32), as ``skimage.color.rgb2lab``."""
    x = rgb.to(DTYPE)
    x = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    x = (x @ _XYZ_FROM_RGB.T.to(x.device)) / _WHITE_D65.to(x.device)
    x = torch.where(x > 0.008856, torch.sign(x) * x.abs() ** (1.0 / 3.0), 7.787 * x + 16.0 / 116.0)
    fx, fy, fz = x.unbind(-1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-1)


def lab2rgb(lab: torch.Tensor) -> torch.Tensor:
    """[..., 3] Lab -> [..., 3] sRGB clipped to [0,1] (float32), as ``skimage.color.lab2rgb``
    (negative Z clipped to 0 before the inverse companding)."""
    lab = lab.to(DTYPE)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = lab[..., 1] / 500.0 + fy
    fz = (fy - lab[..., 2] / 200.0).clamp_min(0.0)
    f = torch.stack([fx, fy, fz], dim=-1)
    xyz = torch.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787) * _WHITE_D65.to(f.device)
    x = xyz @ _RGB_FROM_XYZ.T.to(f.device)
    x = torch.where(x > 0.0031308, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055, x * 12.92)
    return x.clamp(0.0, 1.0)


def match_and_blend_colors(frames: torch.Tensor, reference: torch.Tensor, strength: float) -> torch.Tensor:
    """Official colour correction.

    frames: [3,T,H,W] in [-1,1]; reference: [3,H,W] in [-1,1]; strength in [0,1] (0 = unchanged).
    A channel counts as flat when ``std_src <= 1e-4`` Lab units: the official float32 numpy code only takes
    its ``std_src == 0`` branch by luck of rounding (a constant frame gives std ~4e-6 there and the
    rounding noise is then amplified ~10^6 times); we treat such frames as the intended flat case.
    Both are mapped to [0,1] and clipped, converted to Lab; per frame and Lab channel
    ``x' = (x - mean_src) * std_ref/std_src + mean_ref`` (whole-frame mean, population std;
    ``x' = mean_ref`` where the channel is flat); back to RGB, clipped, blended
    ``(1-s)*src_clipped + s*corrected`` and mapped to [-1,1]. Returns [3,T,H,W] in ``frames.dtype``.
    """
    if strength == 0.0:
        return frames
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"colour correction strength must be in [0, 1] (got {strength}).")
    src = ((frames.to(DTYPE) + 1.0) / 2.0).clamp(0.0, 1.0).permute(1, 2, 3, 0)  # T,H,W,3
    ref = ((reference.to(DTYPE) + 1.0) / 2.0).clamp(0.0, 1.0).permute(1, 2, 0)  # H,W,3
    ref_lab = rgb2lab(ref)
    ref_mean, ref_std = ref_lab.mean(dim=(0, 1)), ref_lab.std(dim=(0, 1), unbiased=False)
    src_lab = rgb2lab(src)
    src_mean = src_lab.mean(dim=(1, 2), keepdim=True)
    src_std = src_lab.std(dim=(1, 2), unbiased=False, keepdim=True)
    flat = src_std <= FLAT_STD
    scaled = (src_lab - src_mean) * (ref_std / torch.where(flat, torch.ones_like(src_std), src_std)) + ref_mean
    corrected = lab2rgb(torch.where(flat, ref_mean.expand_as(src_lab), scaled))
    out = (1.0 - strength) * src + strength * corrected
    return (out * 2.0 - 1.0).permute(3, 0, 1, 2).to(frames.dtype)
