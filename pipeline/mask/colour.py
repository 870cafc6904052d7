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


def _lab_stats(image_ref: torch.Tensor, source_ref: torch.Tensor) -> torch.Tensor:
    """[4,3]: Lab mean and std of the generated reference pixels, then of the source's."""
    a, b = rgb_to_lab(image_ref), rgb_to_lab(source_ref)
    return torch.stack([a.mean(dim=0), a.std(dim=0), b.mean(dim=0), b.std(dim=0)])


def _apply_lab(image: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """Shift/scale ``image``'s Lab channels from the generated statistics to the source's."""
    scale = (stats[3] / stats[1].clamp(min=1e-3)).clamp(0.5, 2.0)  # a flat band must not blow up noise
    return lab_to_rgb((rgb_to_lab(image) - stats[0]) * scale + stats[2])


def _histogram_lut(image_ref: torch.Tensor, source_ref: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """[3,bins]: per RGB channel, the quantile-to-quantile map taking ``image_ref``'s histogram onto
    ``source_ref``'s, sampled on a regular 0..1 grid."""
    grid = torch.linspace(0, 1, bins, device=image_ref.device)
    luts = []
    for c in range(3):
        a = torch.sort(image_ref[:, c].float()).values
        b = torch.sort(source_ref[:, c].float()).values
        qa = a[(grid * (len(a) - 1)).round().long()]
        qb = b[(grid * (len(b) - 1)).round().long()]
        luts.append(_interp(grid, qa, qb))
    return torch.stack(luts)


def _apply_lut(image: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    grid = torch.linspace(0, 1, lut.shape[1], device=image.device)
    return torch.stack([_interp(image[..., c].float().clamp(0, 1), grid, lut[c]) for c in range(3)], -1).clamp(0, 1)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """numpy.interp for torch: piecewise linear through (xp, fp), xp ascending, held at the ends."""
    xp, order = torch.sort(xp)
    fp = fp[order]
    idx = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[idx - 1], xp[idx], fp[idx - 1], fp[idx]
    w = ((x - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0, 1)
    return f0 + (f1 - f0) * w


class ColourMatcher:
    """Colour-matches generated frames to the source, one frame at a time, in video order.

    mode: one of COLOUR_MODES. The per-frame correction (Lab statistics, or histogram map) is an
    exponential moving average over frames with weight ``memory`` on the past, so the correction
    follows lighting changes without flickering from frame to frame."""

    def __init__(self, mode: str, memory: float = 0.5):
        if mode not in COLOUR_MODES:
            raise ValueError(f"colour_match '{mode}' is not one of {', '.join(COLOUR_MODES)}.")
        self.mode, self.memory, self._state = mode, memory, None

    def __call__(self, image: torch.Tensor, source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """image, source: [H,W,3] 0..1; reference: [H,W] bool, the pixels whose colours are compared
        (fewer than 16 and no earlier frame -> image unchanged). Returns the matched image."""
        if self.mode == "none":
            return image
        if int(reference.sum()) >= 16:
            fit = _lab_stats if self.mode == "lab" else _histogram_lut
            current = fit(image[reference], source[reference])
            self._state = current if self._state is None else self.memory * self._state + (1 - self.memory) * current
        if self._state is None:
            return image
        return _apply_lab(image, self._state) if self.mode == "lab" else _apply_lut(image, self._state)
