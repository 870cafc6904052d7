"""Quantisation error bounds derived from each storage format (its step or mantissa), never from a
measured error, so they hold for any weights (any golden set).

Per weight element: |stored - exact| <= ``weight_bound``:
* GGUF block types: one grid step of the block, ``span / (2**bits - 1)`` where ``span`` is
  ``2*max|w|`` for the symmetric types (Q8_0, Q4_0, Q5_0, Q3_K, Q6_K) and ``max(w, 0) - min(w, 0)``
  for the types with a block minimum (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K), over the format's block (32 or
  256 values). Rounding costs half a step, clamping the extreme value of a symmetric block one step;
  the K-quants also quantise their sub-block scales (4-8 bits), for which we allow a second step.
* float types and fp8: round-to-nearest, ``|w| * 2**-(mantissa+1)``, plus half the smallest
  subnormal times the tensor's scale (fp8 scaled files).
Per Linear output row: ``sum_j bound_ij * |x_j|`` (triangle inequality), plus float32 accumulation slack.
"""
from __future__ import annotations

import gguf
import torch

import loading_files

T = gguf.GGMLQuantizationType
GGUF_BITS = {"Q8_0": 8, "Q5_0": 5, "Q5_1": 5, "Q4_0": 4, "Q4_1": 4, "Q2_K": 2, "Q3_K": 3, "Q4_K": 4, "Q5_K": 5,
             "Q6_K": 6}
SYMMETRIC = {"Q8_0", "Q4_0", "Q5_0", "Q3_K", "Q6_K"}
# (mantissa bits, smallest subnormal)
FLOATS = {torch.float16: (10, 2.0 ** -24), torch.bfloat16: (7, 2.0 ** -133), torch.float8_e4m3fn: (3, 2.0 ** -9),
          torch.float8_e5m2: (2, 2.0 ** -16), torch.float32: (23, 2.0 ** -149)}


def gguf_weight_bound(w: torch.Tensor, qtype) -> torch.Tensor:
    """Elementwise bound for a 2-D weight stored as GGUF ``qtype`` (rows split into the format's blocks)."""
    qtype = T(qtype)
    if qtype == T.F32:
        return torch.zeros_like(w)
    if qtype in (T.F16, T.BF16):
        return float_weight_bound(w, torch.float16 if qtype == T.F16 else torch.bfloat16)
    name = qtype.name
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    b = w.float().reshape(w.shape[0], -1, block)
    if name in SYMMETRIC:
        span = 2 * b.abs().amax(-1)
    else:
        span = b.amax(-1).clamp_min(0) - b.amin(-1).clamp_max(0)
    step = span / (2 ** GGUF_BITS[name] - 1) * (2 if name.endswith("_K") else 1)
    return step[..., None].expand_as(b).reshape(w.shape)


def float_weight_bound(w: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> torch.Tensor:
    """Elementwise bound for ``w`` stored as ``dtype`` (times ``scale``: scaled fp8)."""
    mantissa, tiny = FLOATS[dtype]
    return w.float().abs() * 2.0 ** -(mantissa + 1) + tiny / 2 * scale


def linear_output_bound(weight_bound: torch.Tensor, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bound on |y_stored - y_exact| for y = x @ W.T (+ the same float bias): [N, out] like the output."""
    x = x.float().abs()
    slack = 1e-5 * (x @ weight.float().abs().T) + 1e-6  # float32 accumulation in both computations
    return x @ weight_bound.T + slack


def relative_step(bounds: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> float:
    """The format's worst relative step over the stored weights: max(bound) / max|w| per tensor."""
    return max((b.max() / weights[k].abs().max().clamp_min(1e-30)).item() for k, b in bounds.items())


def fp8_bounds(sd: dict, fp8, scaled: bool) -> dict:
    """Bounds of loading_files.kijai_fp8 (plain) / loading_files.scaled_fp8 (scaled, rest in bf16) files of ``sd``."""
    out = {}
    for k, v in sd.items():
        if scaled and loading_files.block_linear(k, sd):
            out[k] = float_weight_bound(v, fp8, (v.abs().max() / loading_files.FP8_MAX[fp8]).item())
        elif scaled and v.dim() > 1:
            out[k] = float_weight_bound(v, torch.bfloat16)
        elif not scaled and not any(s in k for s in loading_files.KIJAI_KEEP):
            out[k] = float_weight_bound(v, fp8)
    return out


def gguf_bounds(sd: dict, types: dict) -> dict:
    return {k: gguf_weight_bound(v, types[k]) for k, v in sd.items() if v.dim() == 2}
