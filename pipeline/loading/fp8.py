"""fp8 checkpoint conventions: plain fp8, legacy ``scaled_fp8`` and ComfyUI ``comfy_quant``.

For a Linear ``X`` the stored weight is ``X.weight`` (float8_e4m3fn or float8_e5m2) and the
dense weight is ``float(X.weight) * scale`` with the scale found, in order, as
``X.scale_weight`` (legacy ComfyUI / Kijai KJ files) or ``X.weight_scale`` (Kijai alias and
the newer comfy_quant format); no scale means 1 (plain fp8). A 2-element ``scaled_fp8``
marker or ``"full_precision_matrix_mult": true`` in a layer's comfy_quant config forbids
fp8 matmul for that layer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from .errors import CheckpointError
from .reader import Checkpoint

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)
FP8_MAX = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0}
_FORMATS = {"float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2}


@dataclass
class Fp8Weight:
    """weight: fp8 [out, in(, ...)]; scale: float32 0-dim or None; fp8_matmul_ok: the file allows fp8 matmul."""
    weight: torch.Tensor
    scale: torch.Tensor | None
    fp8_matmul_ok: bool = True

    def dense(self, dtype=torch.float32, device=None) -> torch.Tensor:
        w = self.weight if device is None else self.weight.to(device)
        w = w.to(torch.float32)
        if self.scale is not None:
            w = w * self.scale.to(w.device, torch.float32)
        return w.to(dtype)


class Fp8Layout:
    """Per-file fp8 conventions, read once (marker, comfy_quant layer configs)."""

    def __init__(self, ckpt: Checkpoint):
        self.ckpt = ckpt
        marker = ckpt.shape("scaled_fp8") if "scaled_fp8" in ckpt else None
        self.full_precision_only = marker is not None and len(marker) == 1 and marker[0] == 2
        self.layer_conf = {}
        meta = ckpt.metadata.get("_quantization_metadata")
        if meta:
            try:
                self.layer_conf.update(json.loads(meta).get("layers", {}))
            except (ValueError, AttributeError):
                raise CheckpointError(ckpt.path, "unreadable _quantization_metadata in the file header",
                                      fix="re-save or re-download the file") from None

    def _conf(self, module: str) -> dict:
        key = f"{module}.comfy_quant"
        if key in self.ckpt:
            raw = self.ckpt.get(key)
            try:
                return json.loads(bytes(raw.to(torch.uint8).flatten().tolist()).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise CheckpointError(self.ckpt.path, "unreadable comfy_quant layer config", keys=[key],
                                      fix="re-save or re-download the file") from None
        return self.layer_conf.get(module, {})

    def weight(self, module: str) -> Fp8Weight | torch.Tensor:
        """The stored ``<module>.weight``: an Fp8Weight if it is fp8, else the plain tensor."""
        w = self.ckpt.get(f"{module}.weight")
        conf = self._conf(module)
        fmt = conf.get("format")
        if fmt is not None and fmt not in _FORMATS:
            raise CheckpointError(self.ckpt.path, f"layer '{module}' uses quantisation format '{fmt}', "
                                  "which this loader does not implement", keys=[f"{module}.comfy_quant"],
                                  expected="float8_e4m3fn or float8_e5m2",
                                  fix="use an fp8, fp16/bf16 or GGUF version of this model")
        if w.dtype not in FP8_DTYPES:
            return w
        scale = None
        for name in ("scale_weight", "weight_scale"):
            if f"{module}.{name}" in self.ckpt:
                scale = self.ckpt.get(f"{module}.{name}").to(torch.float32)
                if scale.numel() != 1:
                    raise CheckpointError(self.ckpt.path, "per-channel/block fp8 scales are not supported",
                                          found=f"{module}.{name} of shape {tuple(scale.shape)}",
                                          expected="one scalar scale per layer", keys=[f"{module}.{name}"])
                scale = scale.reshape(())
                break
        ok = not self.full_precision_only and not conf.get("full_precision_matrix_mult", False)
        return Fp8Weight(w, scale, ok)
