"""Colour matching of a generated region to the source: Lab mean/std transfer, or per-channel
histogram matching. Statistics come from a set of reference pixels (the band just inside the
mask's border, where generated and source should look the same), and the transform is applied
to every generated pixel.

Images are float tensors ``[..., 3]`` sRGB in 0..1.
"""
from __future__ import annotations

import torch

COLOUR_MODES = ("none", "lab", "histogram")

_D65 = torch.tensor([0.95047, 1.0, 1.08883])
_RGB2XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_XYZ2RGB = torch.linalg.inv(_RGB2XYZ)
_EPS, _KAPPA = 216 / 24389, 24389 / 27


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB [...,3] 0..1 -> CIE Lab (D65) [...,3] float32."""
    rgb = rgb.float().clamp(0, 1)
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB2XYZ.T.to(rgb.device) / _D65.to(rgb.device)
    f = torch.where(xyz > _EPS, xyz.clamp(min=1e-12) ** (1 / 3), (_KAPPA * xyz + 16) / 116)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab (D65) [...,3] -> sRGB [...,3] clamped to 0..1."""
    fy = (lab[..., 0] + 16) / 116
    f = torch.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    xyz = torch.where(f ** 3 > _EPS, f ** 3, (116 * f - 16) / _KAPPA) * _D65.to(lab.device)
    lin = (xyz @ _XYZ2RGB.T.to(lab.device)).clamp(0, 1)
    return torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin.clamp(min=1e-12) ** (1 / 2.4) - 0.055).clamp(0, 1)


def match_lab(image: torch.Tensor, image_ref: torch.Tensor, source_ref: torch.Tensor) -> torch.Tensor:
    """Shift/scale ``image``'s Lab channels so that its reference pixels ``image_ref`` [N,3] get the
    mean and standard deviation of the source's pixels at the same places, ``source_ref`` [N,3]."""
    a, b = rgb_to_lab(image_ref), rgb_to_lab(source_ref)
    scale = b.std(dim=0) / a.std(dim=0).clamp(min=1e-3)
    scale = scale.clamp(0.5, 2.0)  # a flat band must not blow up noise
    lab = (rgb_to_lab(image) - a.mean(dim=0)) * scale + b.mean(dim=0)
    return lab_to_rgb(lab)


def match_histogram(image: torch.Tensor, image_ref: torch.Tensor, source_ref: torch.Tensor,
                    bins: int = 256) -> torch.Tensor:
    """Per RGB channel, map ``image`` through the transfer that takes the histogram of
    ``image_ref`` [N,3] onto that of ``source_ref`` [N,3]."""
    out = torch.empty_like(image, dtype=torch.float32)
    grid = torch.linspace(0, 1, bins, device=image.device)
    for c in range(3):
        a = torch.sort(image_ref[:, c].float()).values
        b = torch.sort(source_ref[:, c].float()).values
        q = torch.linspace(0, 1, bins, device=image.device)
        qa = a[(q * (len(a) - 1)).round().long()]
        qb = b[(q * (len(b) - 1)).round().long()]
        # Quantile-to-quantile map sampled on a regular grid, then applied by interpolation.
        lut = _interp(grid, qa, qb)
        out[..., c] = _interp(image[..., c].float().clamp(0, 1), grid, lut)
    return out.clamp(0, 1)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """numpy.interp for torch: piecewise linear through (xp, fp), xp ascending, held at the ends."""
    xp, order = torch.sort(xp)
    fp = fp[order]
    idx = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[idx - 1], xp[idx], fp[idx - 1], fp[idx]
    w = ((x - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0, 1)
    return f0 + (f1 - f0) * w


def match_colours(image: torch.Tensor, source: torch.Tensor, reference: torch.Tensor, mode: str) -> torch.Tensor:
    """Colour-match one generated frame to the source.

    image, source: [H,W,3] 0..1; reference: [H,W] bool, the pixels whose statistics are compared
    (too few of them -> image unchanged). mode: one of COLOUR_MODES."""
    if mode not in COLOUR_MODES:
        raise ValueError(f"colour_match '{mode}' is not one of {', '.join(COLOUR_MODES)}.")
    if mode == "none" or int(reference.sum()) < 16:
        return image
    image_ref, source_ref = image[reference], source[reference]
    if mode == "lab":
        return match_lab(image, image_ref, source_ref)
    return match_histogram(image, image_ref, source_ref)
