"""Attention back-ends behind one function.

``attention(q, k, v, backend)`` takes q [B, Sq, H, d], k/v [B, Sk, H, d] (any float dtype) and
returns [B, Sq, H, d] in q's dtype, softmax scale 1/sqrt(d), no mask.

* ``"auto"`` (loader default): ``flash_attn`` on Hopper when FlashAttention-3 is installed, else ``sdpa``.
* ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention``; on CUDA with cuDNN attention
  first in the priority list (about 1.6x PyTorch's FA2 on Hopper).
* ``"flash_attn"``: FlashAttention-3 (``flash_attn_interface`` or the ``fa3-fwd`` wheel's
  ``fa3_fwd_interface``), else FlashAttention-2 (``flash_attn``).
* ``"fa3_fp8"``: FlashAttention-3 in fp8 with exact smoothing/scaling (``attention_kernels``).
* ``"int8"``: comfy-kitchen's INT8 attention (Ada/Ampere).
* ``"sage"``: SageAttention (int8 QK; changes the numerics, as in the official code).

The 8-bit back-ends apply to the video self-attention only; the cross-attentions (a few hundred
keys, ~1 % of the time) use :func:`exact_backend`. A back-end that is not importable, or that
raises (e.g. fp32 inputs, CPU tensors), falls back to SDPA with one warning naming what was asked
and what is used.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from . import attention_kernels

BACKENDS = ("auto", "sdpa", "flash_attn", "fa3_fp8", "int8", "sage")
_EXACT = {"fa3_fp8": "flash_attn", "int8": "sdpa"}

_WARNED: set[str] = set()
_IMPLS: dict[str, object] = {}
_LOADERS = attention_kernels.LOADERS

try:  # PyTorch >= 2.5: cuDNN attention first, then the others in PyTorch's order.
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _CUDA_ORDER = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
                   SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    sdpa_kernel(_CUDA_ORDER, set_priority=True)  # probe the keyword once
except (ImportError, TypeError, AttributeError):
    sdpa_kernel = None


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def auto_backend(device=None) -> str:
    """``flash_attn`` on a Hopper GPU (compute capability 9.x) with FlashAttention-3 installed, else ``sdpa``."""
    if not torch.cuda.is_available():
        return "sdpa"
    device = torch.device("cuda") if device is None else torch.device(device)
    if device.type != "cuda" or torch.cuda.get_device_capability(device)[0] != 9:
        return "sdpa"
    return "flash_attn" if attention_kernels.fa3_available() else "sdpa"


_AUTO: dict[str, str] = {}


def _auto_for(device) -> str:
    key = str(device)
    if key not in _AUTO:
        _AUTO[key] = auto_backend(device) if torch.device(device).type == "cuda" else "sdpa"
    return _AUTO[key]


def exact_backend(backend: str) -> str:
    """The back-end the cross-attentions use when ``backend`` runs the self-attention."""
    return _EXACT.get(backend, backend)


@torch.compiler.disable
def _run_kernel(kernel, q, k, v):
    return kernel(q, k, v)


def _impl(backend: str):
    """The kernel for ``backend``, or None if it cannot be imported (cached)."""
    if backend not in _IMPLS:
        try:
            _IMPLS[backend] = _LOADERS[backend]()
        except Exception as exc:  # ImportError, or a broken wheel raising at import
            _IMPLS[backend] = None
            _IMPLS[backend + ":why"] = f"{type(exc).__name__}: {exc}"
    return _IMPLS[backend]


def check_backend(backend: str, device=None) -> str:
    """Validate ``backend`` and return the one that will run (warns if it must be SDPA)."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r} unknown: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = auto_backend(device)
    if backend != "sdpa" and _impl(backend) is None:
        warnings.warn(f"attention backend {backend!r} requested but not importable "
                      f"({_IMPLS.get(backend + ':why')}); using 'sdpa' instead", RuntimeWarning, stacklevel=2)
        return "sdpa"
    return backend


@torch.compiler.disable
def _sdpa_cudnn_first(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # Kept out of torch.compile graphs: traced SDPA ignores the priority list and picked a
    # slower kernel on the H100 (4.08 s vs 3.16 s per 480p forward); the graph break costs nothing.
    with sdpa_kernel(_CUDA_ORDER, set_priority=True):
        return F.scaled_dot_product_attention(q, k, v)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """PyTorch SDPA on [B, S, H, d] views (no copies: the kernels take strided heads)."""
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if q.is_cuda and sdpa_kernel is not None:
        out = _sdpa_cudnn_first(q, k, v)
    else:
        out = F.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """Softmax attention, q [B, Sq, H, d], k/v [B, Sk, H, d] -> [B, Sq, H, d] (dtype of q)."""
    if backend == "auto":
        backend = _auto_for(q.device)
    if backend != "sdpa":
        kernel = _impl(backend) if backend in _LOADERS else None
        if kernel is None:
            if backend not in BACKENDS:
                raise ValueError(f"attention backend {backend!r} unknown: choose one of {', '.join(BACKENDS)}")
            _warn_once(backend, f"attention backend {backend!r} is not importable; using 'sdpa' instead")
        else:
            try:
                return _run_kernel(kernel, q, k, v).to(q.dtype)
            except Exception as exc:  # unsupported dtype / device / head dim: SDPA computes the same thing
                _warn_once(f"{backend}:{type(exc).__name__}",
                           f"attention backend {backend!r} failed ({type(exc).__name__}: {exc}); "
                           f"using 'sdpa' instead")
    return sdpa(q, k, v)
