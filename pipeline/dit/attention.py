"""Attention back-ends behind one function.

``attention(q, k, v, backend)`` takes q [B, Sq, H, d], k/v [B, Sk, H, d] (any float dtype) and
returns [B, Sq, H, d] in q's dtype, softmax scale 1/sqrt(d), no mask.

* ``"sdpa"`` (default): ``torch.nn.functional.scaled_dot_product_attention``; on CUDA with
  cuDNN attention first in the priority list (about 1.6x PyTorch's FA2 on Hopper).
* ``"flash_attn"``: FlashAttention-3 (``flash_attn_interface``) or -2 (``flash_attn``).
* ``"sage"``: SageAttention (int8 QK; changes the numerics, as in the official code).

A back-end that is not importable, or that raises (e.g. fp32 inputs, CPU tensors), falls
back to SDPA with one warning naming what was asked and what is used.
"""
from __future__ import annotations

import importlib
import warnings

import torch
import torch.nn.functional as F

BACKENDS = ("sdpa", "flash_attn", "sage")

_WARNED: set[str] = set()
_IMPLS: dict[str, object] = {}

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


def _load_flash():
    try:
        module = importlib.import_module("flash_attn_interface")  # FlashAttention-3 (Hopper)

        def fa3(q, k, v):
            out = module.flash_attn_func(q, k, v)
            return out[0] if isinstance(out, tuple) else out
        return fa3
    except Exception:
        pass
    module = importlib.import_module("flash_attn")
    return lambda q, k, v: module.flash_attn_func(q, k, v)


def _load_sage():
    module = importlib.import_module("sageattention")
    return lambda q, k, v: module.sageattn(q, k, v, tensor_layout="NHD", is_causal=False)


_LOADERS = {"flash_attn": _load_flash, "sage": _load_sage}


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


def check_backend(backend: str) -> str:
    """Validate ``backend`` and return the one that will run (warns if it must be SDPA)."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r} unknown: choose one of {', '.join(BACKENDS)}")
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
