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
        rows = x2.shape[0]
        if rows % 16:  # cuBLASLt fp8 wants every dimension a multiple of 16
            x2 = torch.nn.functional.pad(x2, (0, 0, 0, 16 - rows % 16))
        rowwise = dt == torch.bfloat16
        amax = x2.abs().amax(dim=1, keepdim=True) if rowwise else x2.abs().amax()
        sx = (amax.to(torch.float32) / FP8_MAX[torch.float8_e4m3fn]).clamp_min(1e-12)
        xq = (x2.to(torch.float32) / sx).to(torch.float8_e4m3fn)
        sw = self.scale_weight.to(torch.float32)
        sw = sw.reshape(1, 1).expand(1, self.out_features).contiguous() if rowwise else sw
        out = torch._scaled_mm(xq, self.weight.t(), scale_a=sx, scale_b=sw, out_dtype=dt)
        if self.bias is not None:  # added here: not every torch/cuBLASLt build takes a bias with row-wise scales
            out = out + self.bias.to(dt)
        if self.lora is not None:
            out = out + self.lora.output_delta(x2.to(dt))
        return out[:rows].reshape(*shape[:-1], self.out_features)

    def extra_repr(self):
        return super().extra_repr() + f", fp8={str(self.weight.dtype).split('.')[-1]}, scaled_mm={self.scaled_mm}"


class FloatLinear(PatchedLinear):
    """weight: float [out, in] as stored in the file, used when LoRAs are applied on the fly."""

    def __init__(self, weight, bias, compute_dtype, patches=None):
        super().__init__(weight.shape[1], weight.shape[0], bias, compute_dtype, patches)
        self.weight = nn.Parameter(weight, requires_grad=False)

    def base_weight(self, dtype):
        return self.weight.to(dtype)
