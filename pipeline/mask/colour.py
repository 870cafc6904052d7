"""Colour matching of a generated region to the source: Lab mean/std transfer, or per-channel
histogram matching. Statistics come from a set of reference pixels (the band just inside the
mask's border, where generated and source should look the same), and the transform is applied
to every generated pixel.

Images are float tensors ``[..., 3]`` sRGB in 0..1. The sRGB <-> Lab conversion is the pack's one,
``pipeline.color`` (the same as the sampler's colour correction).
"""
from __future__ import annotations

import torch

from .. import color

COLOUR_MODES = ("none", "lab", "histogram")

def _lab_stats(image_ref: torch.Tensor, source_ref: torch.Tensor) -> torch.Tensor:
    """[4,3]: Lab mean and std of the generated reference pixels, then of the source's."""
    a, b = color.rgb2lab(image_ref.clamp(0, 1)), color.rgb2lab(source_ref.clamp(0, 1))
    return torch.stack([a.mean(dim=0), a.std(dim=0), b.mean(dim=0), b.std(dim=0)])


def _apply_lab(image: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """Shift/scale ``image``'s Lab channels from the generated statistics to the source's."""
    scale = (stats[3] / stats[1].clamp(min=1e-3)).clamp(0.5, 2.0)  # a flat band must not blow up noise
    return color.lab2rgb((color.rgb2lab(image.clamp(0, 1)) - stats[0]) * scale + stats[2])


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
    follows lighting changes without flickering from frame to frame. ``state``: that running correction
    (None before the first matched frame); a resumed paste restores it."""

    def __init__(self, mode: str, memory: float = 0.5):
        if mode not in COLOUR_MODES:
            raise ValueError(f"colour_match '{mode}' is not one of {', '.join(COLOUR_MODES)}.")
        self.mode, self.memory, self.state = mode, memory, None

    def __call__(self, image: torch.Tensor, source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """image, source: [H,W,3] 0..1; reference: [H,W] bool, the pixels whose colours are compared
        (fewer than 16 and no earlier frame -> image unchanged). Returns the matched image."""
        if self.mode == "none":
            return image
        if int(reference.sum()) >= 16:
            fit = _lab_stats if self.mode == "lab" else _histogram_lut
            current = fit(image[reference], source[reference])
            self.state = current if self.state is None else self.memory * self.state + (1 - self.memory) * current
        if self.state is None:
            return image
        return _apply_lab(image, self.state) if self.mode == "lab" else _apply_lut(image, self.state)
