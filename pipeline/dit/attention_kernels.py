"""Optional attention kernels, each loaded on first use: ``load(name) -> kernel(q, k, v)``.

Every kernel takes q [B, Sq, H, d], k/v [B, Sk, H, d] (CUDA, fp16/bf16) and returns [B, Sq, H, d];
softmax scale 1/sqrt(d), no mask. A loader raises (ImportError, RuntimeError) when its package is
missing or unusable; the dispatcher (``attention.py``) then falls back to SDPA with one warning.

* ``flash_attn``: FlashAttention-3 (``flash_attn_interface`` from a source build, or the registry's
  ``fa3-fwd`` wheel whose module is ``fa3_fwd_interface``), else FlashAttention-2 (``flash_attn``).
* ``fa3_fp8``: FlashAttention-3 with e4m3 Q/K/V. The kernel takes one descale per (batch, head), so
  the accuracy comes from exact transforms around it (SageAttention's recipe where it fits):
  K minus its mean over tokens (softmax is shift-invariant per query row), V minus its mean over
  tokens (rows of P sum to 1: the mean is added back after), V scaled per channel (O is linear in V
  per channel: the scale is applied to the output), Q and K scaled per head to the e4m3 range.
* ``int8``: comfy-kitchen's ``int8_attention`` (INT8 Q/K/V with a block Hadamard, ComfyUI >= 0.8
  ships it; built for Ada/Ampere consumer GPUs).
* ``sage``: SageAttention (INT8 QK, FP8 PV).
"""
from __future__ import annotations

import importlib
import logging

import torch

log = logging.getLogger("infinitetalk_lipsync")

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0


def _first_module(*names: str):
    errors = []
    for name in names:
        try:
            return importlib.import_module(name)
        except Exception as exc:  # ImportError, or a wheel built for another torch raising at import
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    raise ImportError("; ".join(errors))


def fa3_module():
    """FlashAttention-3's Python interface: a source build or the ``fa3-fwd`` wheel."""
    return _first_module("flash_attn_interface", "fa3_fwd_interface")


def _unwrap(out):
    # FA3 returns out, or (out, lse) with return_attn_probs / in older builds.
    return out[0] if isinstance(out, tuple) else out


def load_flash_attn():
    try:
        module = fa3_module()
    except ImportError:
        fa2 = importlib.import_module("flash_attn")
        return lambda q, k, v: fa2.flash_attn_func(q, k, v)
    return lambda q, k, v: _unwrap(module.flash_attn_func(q, k, v))


def fp8_operands(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """The exact pre-transforms and e4m3 operands of :func:`fp8_attention`.

    Returns (q8, k8, v8 [B, S, H, d] e4m3, q_descale, k_descale [B, H] fp32,
    v_scale [B, 1, H, d] fp32, v_mean [B, 1, H, d] fp32).

    One reduction pass per input: the largest deviation from the token mean is taken from the
    per-channel extremes, ``max(max - mean, mean - min)``, which equals ``max |x - mean|`` exactly
    (rounding is monotonic), so no second pass over the centred values is needed.
    """
    kf, vf = k.float(), v.float()
    k_mean, v_mean = kf.mean(dim=1, keepdim=True), vf.mean(dim=1, keepdim=True)
    k_dev = torch.maximum(kf.amax(dim=1, keepdim=True) - k_mean, k_mean - kf.amin(dim=1, keepdim=True))
    v_dev = torch.maximum(vf.amax(dim=1, keepdim=True) - v_mean, v_mean - vf.amin(dim=1, keepdim=True))
    q_scale = q.abs().amax(dim=(1, 3)).float().clamp_min(1e-6) / E4M3_MAX
    k_scale = k_dev.amax(dim=3)[:, 0].clamp_min(1e-6) / E4M3_MAX
    v_scale = v_dev.clamp_min(1e-6) / E4M3_MAX
    q8 = (q.float() / q_scale[:, None, :, None]).to(E4M3)
    k8 = ((kf - k_mean) / k_scale[:, None, :, None]).to(E4M3)
    v8 = ((vf - v_mean) / v_scale).to(E4M3)
    return q8, k8, v8, q_scale, k_scale, v_scale, v_mean


def fp8_finish(out: torch.Tensor, v_scale: torch.Tensor, v_mean: torch.Tensor, dtype) -> torch.Tensor:
    """Undo the V transforms on the kernel's output (one rounding to ``dtype``)."""
    return torch.addcmul(v_mean, out.float(), v_scale).to(dtype)


_compiled: dict[str, object] = {}


def _run_compiled(name: str, fn, *args):
    """``fn(*args)`` fused by torch.compile (two memory passes instead of ~10); eager if that fails."""
    compiled = _compiled.get(name)
    if compiled is None:
        compiled = _compiled[name] = torch.compile(fn, dynamic=None)
    if compiled is fn:
        return fn(*args)
    try:
        return compiled(*args)
    except Exception as exc:  # no Triton / compiler error: same values eagerly
        log.warning("%s not compiled (%s); running it eagerly", name, str(exc).splitlines()[0][:200] if str(exc)
                    else type(exc).__name__)
        _compiled[name] = fn
        return fn(*args)


def load_fa3_fp8():
    module = fa3_module()

    def kernel(q, k, v):
        q8, k8, v8, qs, ks, vs, vm = _run_compiled("fp8 attention prep", fp8_operands, q, k, v)
        out = _unwrap(module.flash_attn_func(q8, k8, v8, q_descale=qs, k_descale=ks))
        return _run_compiled("fp8 attention finish", fp8_finish, out, vs, vm, q.dtype)
    return kernel


def load_int8():
    kitchen = importlib.import_module("comfy_kitchen")
    if not kitchen.int8_attention_is_available():
        raise RuntimeError("comfy_kitchen's int8 attention kernel does not support this GPU (compute capability "
                           ">= 7.5 with the CUDA extension loaded)")

    def kernel(q, k, v):
        out = kitchen.int8_attention(q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous(),
                                     v.transpose(1, 2).contiguous())
        return out.transpose(1, 2)
    return kernel


def load_sage():
    module = importlib.import_module("sageattention")
    return lambda q, k, v: module.sageattn(q, k, v, tensor_layout="NHD", is_causal=False)


LOADERS = {"flash_attn": load_flash_attn, "fa3_fp8": load_fa3_fp8, "int8": load_int8, "sage": load_sage}


def fa3_available() -> bool:
    try:
        fa3_module()
        return True
    except ImportError:
        return False
