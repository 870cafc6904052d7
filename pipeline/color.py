"""Colour correction: the official Lab mean/std transfer (``multitalk_utils.match_and_blend_colors``), and the
colour-match methods the sampler offers on top of it (``ColourTarget``: Lab mean/std, histogram, MKL).

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
    corrected = _lab_transfer(src, ref_lab.mean(dim=(0, 1)), ref_lab.std(dim=(0, 1), unbiased=False))
    out = (1.0 - strength) * src + strength * corrected
    return (out * 2.0 - 1.0).permute(3, 0, 1, 2).to(frames.dtype)


# -- colour-match methods for the sampler (one target, many frames) ------------------------------------------------
# "lab mean/std" is the official transfer (Reinhard-style statistics in CIE-Lab); "histogram" maps each RGB
# channel's distribution onto the target's (quantile to quantile); "mkl" is the Monge-Kantorovich linear
# transfer of the RGB mean and covariance (Pitie & Kokaram 2007), which also carries the channel correlations.
COLOUR_METHODS = ("lab mean/std (official)", "histogram", "mkl")
_BINS = 4096            # histogram resolution: 16x finer than one 8-bit level
_FLAT_VAR = 1e-6        # RGB variance below this (std < 1e-3, a quarter 8-bit level) is a flat channel


def _to_unit(frames: torch.Tensor) -> torch.Tensor:
    return frames.to(DTYPE).clamp(0.0, 1.0)


class ColourTarget:
    """Colour statistics of one set of reference pixels, for one method: built from one or many frames
    (``add`` accumulates: the pooled statistics of every pixel added, at flat memory), then applied to
    generated frames with ``transfer``. Frames are [..., 3] sRGB in 0..1.

    lab mean/std: Lab sums (float64) -> mean, population std; histogram: _BINS-bin RGB histograms;
    mkl: RGB sum and outer-product sum (float64) -> mean and covariance."""

    def __init__(self, method: str):
        if method not in COLOUR_METHODS:
            raise ValueError(f"colour method '{method}' is not one of {', '.join(COLOUR_METHODS)}.")
        self.method, self.count = method, 0
        self._sum = self._sq = self._hist = None

    def add(self, pixels: torch.Tensor) -> "ColourTarget":
        x = _to_unit(pixels).reshape(-1, 3)
        if self.method == COLOUR_METHODS[1]:
            hist = torch.stack([_histogram(x[:, c]) for c in range(3)])
            self._hist = hist if self._hist is None else self._hist + hist
        else:
            x = (rgb2lab(x) if self.method == COLOUR_METHODS[0] else x).double()
            sq = (x * x).sum(0) if self.method == COLOUR_METHODS[0] else x.T @ x
            self._sum = x.sum(0) if self._sum is None else self._sum + x.sum(0)
            self._sq = sq if self._sq is None else self._sq + sq
        self.count += x.shape[0]
        return self

    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.count:
            raise ValueError("colour target: no reference pixels were added.")
        mean = self._sum / self.count
        second = self._sq / self.count
        return mean, second - (mean[:, None] * mean[None, :] if second.dim() == 2 else mean * mean)

    def transfer(self, frames: torch.Tensor, strength: float) -> torch.Tensor:
        """frames [T,H,W,3] 0..1 -> matched to the target frame by frame, clipped to 0..1 and blended
        ``(1-s)*src + s*matched`` with the clipped source (as the official code does). strength 0 returns ``frames`` unchanged."""
        if strength == 0.0:
            return frames
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"colour correction strength must be in [0, 1] (got {strength}).")
        src = _to_unit(frames)
        if self.method == COLOUR_METHODS[0]:
            mean, var = self._moments()
            matched = _lab_transfer(src, mean.to(DTYPE), var.clamp_min(0).sqrt().to(DTYPE))
        elif self.method == COLOUR_METHODS[1]:
            matched = torch.stack([_histogram_frame(f, self._hist.to(f.device)) for f in src])
        else:
            mean, cov = self._moments()
            matched = torch.stack([_mkl_frame(f, mean, cov) for f in src])
        out = (1.0 - strength) * src + strength * matched.clamp(0.0, 1.0)
        return out.to(frames.dtype)


def colour_target(frames: torch.Tensor, method: str) -> ColourTarget:
    """The target of the pixels of ``frames`` [..., 3] 0..1 (one reference frame, or several pooled)."""
    return ColourTarget(method).add(frames)


def _lab_transfer(src: torch.Tensor, ref_mean: torch.Tensor, ref_std: torch.Tensor) -> torch.Tensor:
    """The official per-frame Lab mean/std transfer. src [T,H,W,3] 0..1; ref_mean/ref_std [3] -> [T,H,W,3] 0..1."""
    ref_mean, ref_std = ref_mean.to(src.device), ref_std.to(src.device)
    src_lab = rgb2lab(src)
    src_mean = src_lab.mean(dim=(1, 2), keepdim=True)
    src_std = src_lab.std(dim=(1, 2), unbiased=False, keepdim=True)
    flat = src_std <= FLAT_STD
    scaled = (src_lab - src_mean) * (ref_std / torch.where(flat, torch.ones_like(src_std), src_std)) + ref_mean
    return lab2rgb(torch.where(flat, ref_mean.expand_as(src_lab), scaled))


def _histogram(values: torch.Tensor) -> torch.Tensor:
    """[N] 0..1 -> [_BINS] float64 counts."""
    return torch.histc(values.float(), bins=_BINS, min=0.0, max=1.0).double()


def _cdf(hist: torch.Tensor) -> torch.Tensor:
    """[_BINS] counts -> [_BINS+1] cumulative fraction at the bin edges (0 at 0.0, 1 at 1.0)."""
    c = torch.cat([hist.new_zeros(1), hist.cumsum(0)])
    return c / c[-1].clamp_min(1.0)


def _histogram_frame(frame: torch.Tensor, target_hist: torch.Tensor) -> torch.Tensor:
    """Per RGB channel: value -> its quantile in the frame (piecewise linear within a bin) -> the target's value
    at that quantile. frame [H,W,3] 0..1; target_hist [3,_BINS]."""
    edges = torch.linspace(0.0, 1.0, _BINS + 1, dtype=torch.float64, device=frame.device)
    out = []
    for c in range(3):
        x = frame[..., c].double()
        q = _interp(x, edges, _cdf(_histogram(x).to(frame.device)))
        out.append(_interp(q, _cdf(target_hist[c]), edges))
    return torch.stack(out, dim=-1).to(DTYPE)


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """numpy.interp for torch (xp non-decreasing; on a flat run of xp the first point wins)."""
    i = torch.searchsorted(xp, x.contiguous(), right=True).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    w = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return f0 + (f1 - f0) * w


def _sqrtm(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (float64)."""
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def _mkl_frame(frame: torch.Tensor, mean_t: torch.Tensor, cov_t: torch.Tensor) -> torch.Tensor:
    """Monge-Kantorovich linear map of one frame [H,W,3] 0..1 onto the target RGB mean/covariance:
    ``A = Cs^-1/2 (Cs^1/2 Ct Cs^1/2)^1/2 Cs^-1/2``, ``x' = (x - ms) A + mt`` (float64 statistics)."""
    x = frame.reshape(-1, 3).double()
    mean_s = x.mean(0)
    d = x - mean_s
    cov_s = d.T @ d / x.shape[0]
    w, v = torch.linalg.eigh(cov_s)
    w = w.clamp_min(_FLAT_VAR)  # a flat channel must not blow rounding noise up
    s_half, s_inv_half = (v * w.sqrt()) @ v.T, (v * w.rsqrt()) @ v.T
    a = s_inv_half @ _sqrtm(s_half @ cov_t.to(x.device) @ s_half) @ s_inv_half
    return (d @ a + mean_t.to(x.device)).reshape(frame.shape).to(DTYPE)
