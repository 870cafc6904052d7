"""Fused RMSNorm + 3-D RoPE for the self-attention q and k (CUDA, half precision, Triton).

The eager path needs four memory passes per tensor (norm, weight, rotate, cast: ~24 bytes per
element); this kernel reads the projection once and writes the rotated result once (4 bytes).
Same arithmetic and roundings as the eager path: fp32 statistics, the normalised value and the
weighted value rounded to the input dtype (as the official model), fp32 rotation, one final
rounding. Used only for CUDA half/bf16 inference; anything else, or a kernel that fails to build,
takes the eager path (after one warning). Under torch.compile the kernel is an opaque custom op
(``infinitetalk::norm_rope``), used once :func:`verify` has checked it on this GPU: inductor's own
fusion of the same arithmetic is about half as fast (H100, 480p: 1.17 vs 0.56 ms per block).
"""
from __future__ import annotations

import warnings

import torch

from .rope import apply_rope

try:
    import triton
    import triton.language as tl
except Exception:  # CPU-only installs (ImportError) or a broken Triton: the eager path is used
    triton = None

ENABLED = True  # bench A/B switch; the model never needs to change it
_FAILED: list[str] = []
_VERIFIED: list[bool] = []


if triton is not None:
    @triton.jit
    def _norm_rope_kernel(x_ptr, w_ptr, rot_ptr, out_ptr, tokens, eps,
                          DIM: tl.constexpr, HALF_HEAD: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        token = row % tokens
        pair = tl.arange(0, BLOCK)
        mask = pair < DIM // 2
        base = row * DIM
        x_even = tl.load(x_ptr + base + 2 * pair, mask=mask, other=0.0).to(tl.float32)
        x_odd = tl.load(x_ptr + base + 2 * pair + 1, mask=mask, other=0.0).to(tl.float32)
        inv_rms = 1.0 / tl.sqrt(tl.sum(x_even * x_even + x_odd * x_odd, axis=0) / DIM + eps)
        dtype = out_ptr.dtype.element_ty
        w_even = tl.load(w_ptr + 2 * pair, mask=mask, other=0.0).to(tl.float32)
        w_odd = tl.load(w_ptr + 2 * pair + 1, mask=mask, other=0.0).to(tl.float32)
        q_even = ((x_even * inv_rms).to(dtype).to(tl.float32) * w_even).to(dtype).to(tl.float32)
        q_odd = ((x_odd * inv_rms).to(dtype).to(tl.float32) * w_odd).to(dtype).to(tl.float32)
        rot = rot_ptr + (token * HALF_HEAD + pair % HALF_HEAD) * 2
        cos = tl.load(rot, mask=mask, other=1.0)
        sin = tl.load(rot + 1, mask=mask, other=0.0)
        tl.store(out_ptr + base + 2 * pair, (q_even * cos - q_odd * sin).to(dtype), mask=mask)
        tl.store(out_ptr + base + 2 * pair + 1, (q_odd * cos + q_even * sin).to(dtype), mask=mask)


def triton_norm_rope(x: torch.Tensor, weight: torch.Tensor, table: torch.Tensor, eps: float,
                     num_heads: int) -> torch.Tensor:
    """x [B, S, D] (contiguous), weight [D], table [S, 1, d/2, 2] fp32 -> [B, S, H, d] in x's dtype."""
    batch, tokens, dim = x.shape
    out = torch.empty_like(x)
    _norm_rope_kernel[(batch * tokens,)](x, weight.to(x.dtype).contiguous(), table.contiguous(), out, tokens, eps,
                                         DIM=dim, HALF_HEAD=dim // num_heads // 2,
                                         BLOCK=triton.next_power_of_2(dim // 2), num_warps=8)
    return out.unflatten(-1, (num_heads, -1))


@torch.library.custom_op("infinitetalk::norm_rope", mutates_args=())
def _norm_rope_op(x: torch.Tensor, weight: torch.Tensor, table: torch.Tensor, eps: float,
                  num_heads: int) -> torch.Tensor:
    """:func:`triton_norm_rope` as one graph node for torch.compile; [B, S, D] -> [B, S, D]."""
    return triton_norm_rope(x, weight, table, eps, num_heads).flatten(-2)


@_norm_rope_op.register_fake
def _(x, weight, table, eps, num_heads):
    return torch.empty_like(x)


def _fusable(x: torch.Tensor) -> bool:
    return (ENABLED and triton is not None and not _FAILED and x.is_cuda
            and x.dtype in (torch.float16, torch.bfloat16) and x.is_contiguous()
            and not torch.is_grad_enabled())


def _eager(x, norm, table, num_heads):
    return apply_rope(norm(x, torch.float32).unflatten(-1, (num_heads, -1)), table, x.dtype)


def _agrees(fused_out: torch.Tensor, x, norm, table, num_heads) -> bool:
    """First use on this GPU: the kernel must match the eager path on a slice.

    The two may round an intermediate differently (1/sqrt vs rsqrt) by one ulp of its own size;
    after the rotation a result can be near zero, so the bound is relative to each head's largest
    value, not to the element: two ulp there, where a real indexing error is off by O(1).
    """
    n = min(256, x.shape[1])
    ref = _eager(x[:1, :n], norm, table[:n], num_heads).float()
    diff = (fused_out[:1, :n].float() - ref).abs()
    head_scale = ref.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return bool((diff <= 2 * torch.finfo(x.dtype).eps * head_scale).all())


def norm_rope(x: torch.Tensor, norm, table: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``RoPE(norm(x))``: x [B, S, D] projection, norm an ``RMSNorm``, table [S, 1, d/2, 2] -> [B, S, H, d]."""
    if _fusable(x):
        if torch.compiler.is_compiling():
            if _VERIFIED:
                return _norm_rope_op(x, norm.weight, table, norm.eps, num_heads).unflatten(-1, (num_heads, -1))
            return _eager(x, norm, table, num_heads)
        try:
            out = triton_norm_rope(x, norm.weight, table, norm.eps, num_heads)
            if not _VERIFIED and _agrees(out, x, norm, table, num_heads):
                _VERIFIED.append(True)
            if _VERIFIED:
                return out
            reason = "its result differs from the eager path on this GPU"
        except Exception as exc:  # no compiler / unsupported GPU: the eager path gives the same values
            reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        _FAILED.append(reason)
        warnings.warn(f"fused RMSNorm+RoPE kernel disabled ({reason}); using the eager path", RuntimeWarning,
                      stacklevel=2)
    return _eager(x, norm, table, num_heads)


def verify(dim: int, eps: float, table: torch.Tensor, num_heads: int, dtype: torch.dtype) -> bool:
    """Check the kernel on ``table``'s GPU before compiled blocks use it (compiled code cannot check at first
    use): random projections of up to 256 tokens, an RMSNorm of width ``dim`` with random weights, the rope
    ``table`` [S, 1, d/2, 2]. Checks once per process; returns whether compiled blocks use the kernel."""
    if not _VERIFIED and not _FAILED and _fusable(torch.empty(0, device=table.device, dtype=dtype)):
        from .layers import RMSNorm
        tokens = min(256, table.shape[0])
        norm = RMSNorm(dim, eps).to(table.device)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            x = torch.randn(1, tokens, dim, device=table.device).to(dtype)
            norm_rope(x, norm, table[:tokens], num_heads)
    return bool(_VERIFIED)
