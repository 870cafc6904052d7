"""GGUF block dequantisation in plain torch (any device, vectorised over blocks).

Each kernel takes the raw bytes of a tensor, ``uint8 [n_blocks, type_size]``, and returns
``float32 [n_blocks, block_size]`` with the same operation order as the ``gguf`` package's
numpy reference, so results are bit-identical in float32 on CPU and CUDA.
Layouts: ggml ``block_q*`` structs, little-endian, fp16 super-scales.
"""
from __future__ import annotations

import math

import torch

# ggml type ids (gguf.GGMLQuantizationType values; fixed by the file format).
F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = 0, 1, 2, 3, 6, 7, 8
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16 = 10, 11, 12, 13, 14, 30

QK_K = 256

# type id -> (name, elements per block, bytes per block)
TYPES = {
    F32: ("F32", 1, 4), F16: ("F16", 1, 2), BF16: ("BF16", 1, 2),
    Q4_0: ("Q4_0", 32, 18), Q4_1: ("Q4_1", 32, 20), Q5_0: ("Q5_0", 32, 22), Q5_1: ("Q5_1", 32, 24),
    Q8_0: ("Q8_0", 32, 34), Q2_K: ("Q2_K", 256, 84), Q3_K: ("Q3_K", 256, 110), Q4_K: ("Q4_K", 256, 144),
    Q5_K: ("Q5_K", 256, 176), Q6_K: ("Q6_K", 256, 210),
}


def type_name(qtype: int) -> str:
    return TYPES[qtype][0] if qtype in TYPES else f"ggml type {qtype}"


def _f16(b: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 2] -> float32 [..., 1] (little-endian fp16)."""
    return b.contiguous().view(torch.float16).to(torch.float32)


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """uint8 [n, k] -> uint8 [n, 2k]: all low nibbles, then all high nibbles."""
    return torch.cat([qs & 0x0F, qs >> 4], dim=-1)


def _shifts(step: int, device) -> torch.Tensor:
    """uint8 [8 // step] bit offsets 0, step, 2*step, ... < 8.

    Made by ``arange`` on ``device``: a ``torch.tensor([...], device="cuda")`` literal is a
    host->device copy that synchronises the stream, once per layer per forward."""
    return torch.arange(0, 8, step, device=device, dtype=torch.uint8)


def _bits32(qh: torch.Tensor) -> torch.Tensor:
    """uint8 [n, 4] (a little-endian u32) -> uint8 [n, 32]: bit j of the word at index j."""
    return ((qh.unsqueeze(-1) >> _shifts(1, qh.device)) & 1).reshape(qh.shape[0], 32)


def _q4_0(b):
    d = _f16(b[:, :2])
    q = _nibbles(b[:, 2:]).to(torch.int8) - 8
    return d * q.to(torch.float32)


def _q4_1(b):
    d, m = _f16(b[:, :2]), _f16(b[:, 2:4])
    return d * _nibbles(b[:, 4:]).to(torch.float32) + m


def _q5_0(b):
    d = _f16(b[:, :2])
    q = (_nibbles(b[:, 6:]) | (_bits32(b[:, 2:6]) << 4)).to(torch.int8) - 16
    return d * q.to(torch.float32)


def _q5_1(b):
    d, m = _f16(b[:, :2]), _f16(b[:, 2:4])
    q = _nibbles(b[:, 8:]) | (_bits32(b[:, 4:8]) << 4)
    return d * q.to(torch.float32) + m


def _q8_0(b):
    d = _f16(b[:, :2])
    return b[:, 2:].contiguous().view(torch.int8).to(torch.float32) * d


def _q2_k(b):
    n = b.shape[0]
    scales, qs = b[:, :16], b[:, 16:80]
    d, dmin = _f16(b[:, 80:82]), _f16(b[:, 82:84])
    dl = (d * (scales & 0x0F).to(torch.float32)).reshape(n, 16, 1)
    ml = (dmin * (scales >> 4).to(torch.float32)).reshape(n, 16, 1)
    q = ((qs.reshape(n, 2, 1, 32) >> _shifts(2, b.device).reshape(1, 1, 4, 1)) & 3).reshape(n, 16, 16).to(torch.float32)
    return (dl * q - ml).reshape(n, QK_K)


def _q3_k(b):
    n = b.shape[0]
    hmask, qs, sc, d = b[:, :32], b[:, 32:96], b[:, 96:108], _f16(b[:, 108:110])
    low = sc[:, :8].reshape(n, 1, 8) >> _shifts(4, b.device).reshape(1, 2, 1)
    high = sc[:, 8:].reshape(n, 1, 4) >> _shifts(2, b.device).reshape(1, 4, 1)
    scales = (low.reshape(n, 16) & 0x0F) | ((high.reshape(n, 16) & 0x03) << 4)
    scales = (scales.to(torch.int8) - 32).to(torch.float32)
    dl = (d * scales).reshape(n, 16, 1)
    ql = qs.reshape(n, 2, 1, 32) >> _shifts(2, b.device).reshape(1, 1, 4, 1)
    qh = hmask.reshape(n, 1, 1, 32) >> _shifts(1, b.device).reshape(1, 1, 8, 1)
    ql = ql.reshape(n, 16, 16) & 3
    qh = (qh.reshape(n, 16, 16) & 1) ^ 1  # a set mask bit means "no -4 offset"
    q = (ql.to(torch.int8) - (qh << 2).to(torch.int8)).to(torch.float32)
    return (dl * q).reshape(n, QK_K)


def _k4_scales(b: torch.Tensor):
    """Bytes 0..16 of Q4_K/Q5_K blocks (fp16 d, fp16 dmin, 12 bytes of packed six-bit scales
    and mins) -> (d * scale, dmin * min), float32 [n, 8, 1] each."""
    n = b.shape[0]
    d, dmin = _f16(b[:, :2]), _f16(b[:, 2:4])
    s = b[:, 4:16].reshape(n, 3, 4)
    ds, ms, md = s[:, 0], s[:, 1], s[:, 2]
    sc = torch.cat([ds & 0x3F, (md & 0x0F) | ((ds >> 2) & 0x30)], dim=-1)
    mn = torch.cat([ms & 0x3F, (md >> 4) | ((ms >> 2) & 0x30)], dim=-1)
    return (d * sc.to(torch.float32)).reshape(n, 8, 1), (dmin * mn.to(torch.float32)).reshape(n, 8, 1)


def _q4_k(b):
    n = b.shape[0]
    d, dm = _k4_scales(b)
    qs = b[:, 16:].reshape(n, 4, 1, 32) >> _shifts(4, b.device).reshape(1, 1, 2, 1)
    q = (qs & 0x0F).reshape(n, 8, 32).to(torch.float32)
    return (d * q - dm).reshape(n, QK_K)


def _q5_k(b):
    n = b.shape[0]
    d, dm = _k4_scales(b)
    ql = b[:, 48:].reshape(n, 4, 1, 32) >> _shifts(4, b.device).reshape(1, 1, 2, 1)
    qh = b[:, 16:48].reshape(n, 1, 1, 32) >> _shifts(1, b.device).reshape(1, 1, 8, 1)
    q = ((ql & 0x0F).reshape(n, 8, 32) | ((qh & 1).reshape(n, 8, 32) << 4)).to(torch.float32)
    return (d * q - dm).reshape(n, QK_K)


def _q6_k(b):
    n = b.shape[0]
    ql, qh = b[:, :128], b[:, 128:192]
    scales = b[:, 192:208].contiguous().view(torch.int8).to(torch.float32)
    d = (_f16(b[:, 208:210]) * scales).reshape(n, 16, 1)
    ql = ql.reshape(n, 2, 1, 64) >> _shifts(4, b.device).reshape(1, 1, 2, 1)
    ql = (ql & 0x0F).reshape(n, 8, 32)
    qh = qh.reshape(n, 2, 1, 32) >> _shifts(2, b.device).reshape(1, 1, 4, 1)
    qh = (qh & 0x03).reshape(n, 8, 32)
    q = ((ql | (qh << 4)).to(torch.int8) - 32).reshape(n, 16, 16).to(torch.float32)
    return (d * q).reshape(n, QK_K)


def _bf16(b):
    return b.contiguous().view(torch.bfloat16).to(torch.float32)


def _f32(b):
    return b.contiguous().view(torch.float32)


_KERNELS = {F32: _f32, F16: _f16, BF16: _bf16, Q4_0: _q4_0, Q4_1: _q4_1, Q5_0: _q5_0, Q5_1: _q5_1,
            Q8_0: _q8_0, Q2_K: _q2_k, Q3_K: _q3_k, Q4_K: _q4_k, Q5_K: _q5_k, Q6_K: _q6_k}
SUPPORTED = frozenset(_KERNELS)


def dequantize(raw: torch.Tensor, qtype: int, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Raw GGUF tensor bytes -> dense tensor.

    raw: uint8, any shape whose total size is the tensor's byte size (GGUFReader gives
    ``[..rows, bytes_per_row]``); qtype: ggml type id; shape: torch-order logical shape.
    Returns ``dtype`` [shape] on raw's device (computed in float32, then cast)."""
    if qtype not in _KERNELS:
        raise NotImplementedError(f"GGUF quantisation {type_name(qtype)} is not supported; supported: "
                                  + ", ".join(sorted(type_name(t) for t in SUPPORTED)))
    _, _, type_size = TYPES[qtype]
    blocks = raw.reshape(-1, type_size)
    out = _KERNELS[qtype](blocks).reshape(tuple(shape))
    return out if dtype == torch.float32 else out.to(dtype)


def packed_nbytes(qtype: int, shape) -> int:
    """Bytes a tensor of ``shape`` occupies in ``qtype`` (row length must be a block multiple)."""
    _, block, size = TYPES[qtype]
    return math.prod(shape) // block * size
