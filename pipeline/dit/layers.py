"""Small layers with the official numerics (fp32 statistics, outputs in the input dtype)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm(nn.LayerNorm):
    """LayerNorm with fp32 statistics (and fp32 affine) rounded once to the input dtype.

    PyTorch's half/bf16 kernels already accumulate and apply the affine in fp32, so this
    equals the official ``F.layer_norm(x.float(), ...).to(dtype)`` without the fp32 copy.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if weight is not None and weight.dtype != x.dtype:
            weight, bias = weight.to(x.dtype), bias.to(x.dtype)
        return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 from any input dtype, result cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                            self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """Wan RMSNorm over the full width: ``dtype(x * rsqrt(mean(x^2) + eps)) * weight``."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The official code rounds the normalised value to x's dtype before the weight multiply.
        return F.rms_norm(x, (x.shape[-1],), None, self.eps) * self.weight.to(x.dtype)


class Fp32Linear(nn.Linear):
    """A Linear the official model runs under an fp32 autocast (time MLPs, head): fp32 in, fp32 out.

    Still an ``nn.Linear`` so a loader can swap it; a replacement must accept fp32 input.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dtype == torch.float32:
            return super().forward(x.float())
        return F.linear(x.float(), self.weight.float(), None if self.bias is None else self.bias.float())


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` computed in fp32 (shift/scale fp32 [B, 1, D]), one rounding to x's dtype."""
    out = torch.empty_like(x)
    return torch.addcmul(shift, x, 1 + scale, out=out)


def gated_add(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``x + y * gate`` in fp32 (gate fp32 [B, 1, D]), one rounding to x's dtype (new tensor)."""
    out = torch.empty_like(x)
    return torch.addcmul(x, y, gate, out=out)
