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

    def forward(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        """x [..., D] -> [..., D] in ``out_dtype`` (default x's dtype).

        The official code rounds the normalised value, and then the weighted one, to x's dtype.
        With ``out_dtype=float32`` the weighted bf16 result is written as fp32 directly (same
        values, one pass less for the fp32 RoPE that follows).
        """
        normed = F.rms_norm(x, (x.shape[-1],), None, self.eps)
        weight = self.weight.to(x.dtype)
        if out_dtype is None or out_dtype == x.dtype:
            return normed * weight
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return (normed * weight).to(out_dtype)
        return torch.mul(normed, weight, out=torch.empty(normed.shape, dtype=out_dtype, device=normed.device))


class Fp32Linear(nn.Linear):
    """A Linear the official model runs under an fp32 autocast (time MLPs, head): fp32 in, fp32 out.

    Still an ``nn.Linear`` so a loader can swap it; a replacement must accept fp32 input.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dtype == torch.float32:
            return super().forward(x.float())
        return F.linear(x.float(), self.weight.float(), None if self.bias is None else self.bias.float())


def _fp32_addcmul(base: torch.Tensor, a: torch.Tensor, b: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``base + a * b`` computed in fp32, rounded once to ``like``'s dtype.

    Eager inference writes the rounded result directly (no fp32 temporary); ``out=`` cannot
    record autograd, and under torch.compile the cast fuses anyway.
    """
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return torch.addcmul(base, a, b).to(like.dtype)
    return torch.addcmul(base, a, b, out=torch.empty_like(like))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` in fp32 (shift/scale fp32 [B, 1, D]), one rounding to x's dtype."""
    return _fp32_addcmul(shift, x, 1 + scale, x)


def gated_add(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``x + y * gate`` in fp32 (gate fp32 [B, 1, D]), one rounding to x's dtype (new tensor)."""
    return _fp32_addcmul(x, y, gate, x)


@torch.library.custom_op("infinitetalk::linear_gelu", mutates_args=())
def _linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``gelu_tanh(x @ weight.T + bias)`` with the GELU in cuBLASLt's GEMM epilogue; x [M, K] -> [M, N].
    A custom op so torch.compile keeps the fused GEMM instead of splitting it into GEMM + GELU. (On the CPU
    ``_addmm_activation`` applies the erf GELU, so the CPU computes the two steps.)"""
    if not x.is_cuda:
        return F.gelu(F.linear(x, weight, bias), approximate="tanh")
    return torch._addmm_activation(bias, x, weight.t(), use_gelu=True)


@_linear_gelu.register_fake
def _(x, weight, bias):
    return x.new_empty(x.shape[0], weight.shape[0])


class FeedForward(nn.Sequential):
    """Linear -> GELU(tanh) -> Linear, the official ``ffn`` (state-dict keys ``ffn.0`` / ``ffn.2``).

    On CUDA in half precision with a plain Linear first, the GELU runs in the first GEMM's epilogue on
    its fp32 accumulator (one pass less over the 13,824-wide hidden state: H100, 480p, 0.64 ms per
    block). That skips one bf16 rounding of the pre-activation (a difference of at most one ulp of the
    hidden value). Quantised first layers (fp8, GGUF, on-the-fly LoRA) and the CPU take the plain path."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, act, second = self[0], self[1], self[2]
        if (type(first) is nn.Linear and x.is_cuda and x.dtype in (torch.float16, torch.bfloat16)
                and first.weight.dtype == x.dtype and first.bias is not None and not torch.is_grad_enabled()):
            hidden = _linear_gelu(x.reshape(-1, x.shape[-1]), first.weight, first.bias)
            return second(hidden.view(*x.shape[:-1], -1))
        return second(act(first(x)))
