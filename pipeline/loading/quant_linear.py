"""Linear layers whose weight is rebuilt at every forward, on the weight's own device.

Drop-in replacements for ``nn.Linear`` (same call ``m(x)``, same ``in_features`` /
``out_features`` / ``bias``):

* :class:`GGUFLinear` keeps GGUF blocks (uint8) and dequantises them with our kernels;
* :class:`Fp8Linear` keeps fp8 weights (+ a per-layer scale) and either up-casts them
  (default, works everywhere) or runs ``torch._scaled_mm`` with per-token activation scales;
* :class:`FloatLinear` keeps a float weight and adds LoRA deltas on the fly.

Any of them may carry a :class:`~.lora.PatchStack` of on-the-fly LoRA patches. The dense
weight is built in float32 (``base + sum(deltas)``) and rounded once to the compute dtype,
exactly like merging at load time. Inputs are cast to the compute dtype; the output has
the compute dtype.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from . import dequant
from .fp8 import FP8_MAX

log = logging.getLogger("infinitetalk_lipsync")


class PatchedLinear(nn.Module):
    """Base: subclasses implement ``base_weight(dtype) -> Tensor[out, in]`` on the weight's device."""

    def __init__(self, in_features: int, out_features: int, bias: torch.Tensor | None,
                 compute_dtype: torch.dtype, patches=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype = compute_dtype
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.lora = patches  # PatchStack or None

    def base_weight(self, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError

    def dense_weight(self) -> torch.Tensor:
        """The effective weight, compute dtype [out, in]."""
        if self.lora is None:
            return self.base_weight(self.compute_dtype)
        w = self.base_weight(torch.float32)
        return (w + self.lora.weight_delta(w.shape, w.device)).to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = self.compute_dtype
        bias = None if self.bias is None else self.bias.to(dt)
        return F.linear(x.to(dt), self.dense_weight(), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, compute={self.compute_dtype}" + (
            f", lora={len(self.lora.scales)}" if self.lora is not None else "")


class GGUFLinear(PatchedLinear):
    """qweight: uint8 [out, bytes_per_row] GGUF blocks of type ``qtype``."""

    def __init__(self, qweight: torch.Tensor, qtype: int, shape, bias, compute_dtype, patches=None):
        super().__init__(shape[1], shape[0], bias, compute_dtype, patches)
        self.register_buffer("qweight", qweight)
        self.qtype = qtype

    def base_weight(self, dtype):
        return dequant.dequantize(self.qweight, self.qtype, (self.out_features, self.in_features), dtype)

    def extra_repr(self):
        return super().extra_repr() + f", gguf={dequant.type_name(self.qtype)}"


def _quantize_fp8(x: torch.Tensor, rowwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (e4m3fn [M, K], fp32 scale [M, 1] per token or [] per tensor), x ~ q * scale."""
    amax = x.abs().amax(dim=1, keepdim=True) if rowwise else x.abs().amax()
    scale = (amax.to(torch.float32) / FP8_MAX[torch.float8_e4m3fn]).clamp_min(1e-12)
    return (x.to(torch.float32) / scale).to(torch.float8_e4m3fn), scale


_quantize_impl = None


def quantize_fp8(x: torch.Tensor, rowwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_quantize_fp8` fused into one pass by torch.compile where it compiles.

    Eager it makes ~6 passes over the activations with an fp32 copy, which cost more than the
    fp8 GEMM saves (H100, 480p: 3.76 s vs 3.13 s per forward in bf16). Without a working
    compiler (no Triton) it stays eager, with one warning.
    """
    global _quantize_impl
    if _quantize_impl is None:
        try:
            compiled = torch.compile(_quantize_fp8, dynamic=None)
            compiled(x, rowwise)
            _quantize_impl = compiled
        except Exception as exc:  # no Triton / compiler: correct, just slower
            log.warning("fp8 activation quantisation not compiled (%s); running it eagerly",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            _quantize_impl = _quantize_fp8
    return _quantize_impl(x, rowwise)


# The forms of the call, fastest first; the build's is learnt on the first failure and kept. Fast
# accumulation (no periodic promotion of the fp8 tensor-core sums to fp32) makes the row-wise GEMMs
# 20-28 % faster on the H100 at the 480p shapes and moves their error against fp32 by < 1 % of the e4m3
# rounding error (2.64e-2 -> 2.65e-2 relative at K = 13,824): the activations' rounding dominates. A
# bias added after the GEMM or rows padded to 16 cost one extra pass each, so they are given up first.
_FORMS = [dict(fast_accum=fast, pad_rows=pad, bias=bias)
          for fast in (True, False) for pad in (False, True) for bias in (True, False)]
_MM = dict(_FORMS[0])


def scaled_mm(xq, w, sx, sw, bias, out_dtype):
    """``torch._scaled_mm`` in the first form of :data:`_FORMS` this build runs."""
    rows = xq.shape[0]
    xq_, sx_ = xq, sx
    if _MM["pad_rows"] and rows % 16:
        pad = 16 - rows % 16
        xq_ = torch.nn.functional.pad(xq.view(torch.uint8), (0, 0, 0, pad)).view(xq.dtype)
        sx_ = torch.nn.functional.pad(sx, (0, 0, 0, pad), value=1.0) if sx.dim() == 2 else sx
    fused_bias = bias is not None and _MM["bias"]
    try:
        out = torch._scaled_mm(xq_, w, scale_a=sx_, scale_b=sw, bias=bias if fused_bias else None,
                               out_dtype=out_dtype, use_fast_accum=_MM["fast_accum"])[:rows]
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, NotImplementedError):
        later = _FORMS.index(_MM) + 1
        if later == len(_FORMS):
            raise
        _MM.update(_FORMS[later])
        return scaled_mm(xq, w, sx, sw, bias, out_dtype)
    return out if bias is None or fused_bias else out + bias


class Fp8Linear(PatchedLinear):
    """weight: fp8 [out, in]; scale_weight: float32 0-dim (1 for plain fp8).

    ``scaled_mm=True`` runs the matmul in fp8 on GPUs that support it (compute capability
    >= 8.9): activations are quantised per token (row-wise scales) for bf16 output, per
    tensor otherwise; any failure falls back to the up-cast path for this layer."""

    def __init__(self, weight, scale, bias, compute_dtype, patches=None, scaled_mm=False):
        super().__init__(weight.shape[1], weight.shape[0], bias, compute_dtype, patches)
        self.register_buffer("weight", weight)
        self.register_buffer("scale_weight", torch.ones((), dtype=torch.float32) if scale is None else scale)
        self.scaled_mm = scaled_mm and weight.dtype == torch.float8_e4m3fn

    def base_weight(self, dtype):
        w = self.weight.to(torch.float32) * self.scale_weight.to(torch.float32)
        return w.to(dtype)

    def forward(self, x):
        if self.scaled_mm and x.is_cuda:
            try:
                return self._fp8_forward(x)
            except (RuntimeError, NotImplementedError) as exc:
                log.warning("fp8 matmul unavailable (%s); up-casting this layer instead", str(exc).splitlines()[0])
                self.scaled_mm = False
        return super().forward(x)

    def _fp8_forward(self, x):
        dt = self.compute_dtype
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        rowwise = dt == torch.bfloat16
        xq, sx = quantize_fp8(x2, rowwise)
        sw = self.scale_weight.to(torch.float32)
        sw = sw.reshape(1, 1).expand(1, self.out_features).contiguous() if rowwise else sw
        bias = None if self.bias is None else self.bias.to(dt)
        out = scaled_mm(xq, self.weight.t(), sx, sw, bias, dt)
        if self.lora is not None:
            out = out + self.lora.output_delta(x2.to(dt))
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self):
        return super().extra_repr() + f", fp8={str(self.weight.dtype).split('.')[-1]}, scaled_mm={self.scaled_mm}"


class FloatLinear(PatchedLinear):
    """weight: float [out, in] as stored in the file, used when LoRAs are applied on the fly."""

    def __init__(self, weight, bias, compute_dtype, patches=None):
        super().__init__(weight.shape[1], weight.shape[0], bias, compute_dtype, patches)
        self.weight = nn.Parameter(weight, requires_grad=False)

    def base_weight(self, dtype):
        return self.weight.to(dtype)
