"""Tiny numpy K-quant encoders (Q2_K..Q6_K) for tests: ``encode(x float32 [n, 256k]) -> uint8
[n, bytes]`` in the exact ggml block layouts (gguf 0.19 can only dequantise these types).
Quality is that of a simple round-to-nearest encoder; only the layout must be exact."""
from __future__ import annotations

import numpy as np


def _f16(x):
    return np.asarray(x, dtype=np.float16).reshape(-1, 1).view(np.uint8)


def _asym(x, n_sub, qmax, smax):
    """Per sub-block scale/min for d*sc*q - dmin*m: returns q [n, 256], sc, mn [n, n_sub], d, dmin [n]."""
    n = x.shape[0]
    xs = x.reshape(n, n_sub, -1)
    lo = np.minimum(xs.min(-1), 0.0)
    s = (xs.max(-1) - lo) / qmax
    d = (s.max(-1) / smax).astype(np.float16).astype(np.float32)
    dmin = ((-lo).max(-1) / smax).astype(np.float16).astype(np.float32)
    sc = np.clip(np.round(s / np.where(d == 0, 1, d)[:, None]), 0, smax)
    mn = np.clip(np.round(-lo / np.where(dmin == 0, 1, dmin)[:, None]), 0, smax)
    step = (d[:, None] * sc)[..., None]
    q = np.clip(np.round((xs + (dmin[:, None] * mn)[..., None]) / np.where(step == 0, 1, step)), 0, qmax)
    return q.reshape(n, -1).astype(np.uint8), sc.astype(np.uint8), mn.astype(np.uint8), d, dmin


def _pack_scale_min(sc, mn):
    b = np.zeros((sc.shape[0], 12), np.uint8)
    b[:, 0:4] = (sc[:, :4] & 0x3F) | ((sc[:, 4:] >> 4) << 6)
    b[:, 4:8] = (mn[:, :4] & 0x3F) | ((mn[:, 4:] >> 4) << 6)
    b[:, 8:12] = (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4)
    return b


def _pack_nibbles(q):
    """q [n, 256] 4-bit -> [n, 128]: byte c*32+l = q[c*64+l] | q[c*64+32+l] << 4."""
    q = q.reshape(-1, 4, 2, 32)
    return (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)


def _pack_bits(q, shift_groups):
    """q [n, 256] of 2-bit values -> bytes holding ``shift_groups`` values each (2 bits apart)."""
    n = q.shape[0]
    q = q.reshape(n, -1, shift_groups, 32).astype(np.uint8)
    out = np.zeros((n, q.shape[1], 32), np.uint8)
    for s in range(shift_groups):
        out |= q[:, :, s] << (2 * s)
    return out.reshape(n, -1)


def _blocks(x):
    return np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 256)


def q4_k(x):
    xb = _blocks(x)
    q, sc, mn, d, dmin = _asym(xb, 8, 15, 63)
    out = np.concatenate([_f16(d), _f16(dmin), _pack_scale_min(sc, mn), _pack_nibbles(q)], axis=1)
    return out.reshape(x.shape[0], -1)


def q5_k(x):
    xb = _blocks(x)
    q, sc, mn, d, dmin = _asym(xb, 8, 31, 63)
    qh = np.zeros((xb.shape[0], 32), np.uint8)
    hi = (q >> 4).reshape(-1, 8, 32)
    for b in range(8):
        qh |= hi[:, b] << b
    out = np.concatenate([_f16(d), _f16(dmin), _pack_scale_min(sc, mn), qh, _pack_nibbles(q & 0x0F)], axis=1)
    return out.reshape(x.shape[0], -1)


def q2_k(x):
    xb = _blocks(x)
    q, sc, mn, d, dmin = _asym(xb, 16, 3, 15)
    out = np.concatenate([sc | (mn << 4), _pack_bits(q, 4), _f16(d), _f16(dmin)], axis=1)
    return out.reshape(x.shape[0], -1)


def q3_k(x):
    xb = _blocks(x)
    n = xb.shape[0]
    xs = xb.reshape(n, 16, 16)
    s = np.abs(xs).max(-1) / 4
    d = (s.max(-1) / 31).astype(np.float16).astype(np.float32)
    sc = np.clip(np.round(s / np.where(d == 0, 1, d)[:, None]), 1, 31)
    q = np.clip(np.round(xs / (d[:, None] * sc)[..., None]), -4, 3).reshape(n, 256).astype(np.int16) + 4
    ql, hbit = (q & 3).astype(np.uint8), (q >> 2).astype(np.uint8)
    hmask = np.zeros((n, 32), np.uint8)
    hb = hbit.reshape(n, 8, 32)
    for b in range(8):
        hmask |= hb[:, b] << b
    s6 = (sc.astype(np.int16) + 32).astype(np.uint8)
    scales = np.zeros((n, 12), np.uint8)
    scales[:, :8] = (s6[:, :8] & 0x0F) | ((s6[:, 8:] & 0x0F) << 4)
    hs = (s6 >> 4).reshape(n, 4, 4)  # index s*4 + k
    for s_ in range(4):
        scales[:, 8:12] |= hs[:, s_, :] << (2 * s_)
    out = np.concatenate([hmask, _pack_bits(ql, 4), scales, _f16(d)], axis=1)
    return out.reshape(x.shape[0], -1)


def q6_k(x):
    xb = _blocks(x)
    n = xb.shape[0]
    xs = xb.reshape(n, 16, 16)
    s = np.abs(xs).max(-1) / 31
    d = (s.max(-1) / 127).astype(np.float16).astype(np.float32)
    sc = np.clip(np.round(s / np.where(d == 0, 1, d)[:, None]), 1, 127)
    q = (np.clip(np.round(xs / (d[:, None] * sc)[..., None]), -32, 31) + 32).reshape(n, 2, 4, 32).astype(np.uint8)
    lo, hi = q & 0x0F, q >> 4
    ql = np.concatenate([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], axis=2).reshape(n, 128)
    qh = (hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)).reshape(n, 64)
    out = np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8), _f16(d)], axis=1)
    return out.reshape(x.shape[0], -1)


ENCODERS = {"Q2_K": q2_k, "Q3_K": q3_k, "Q4_K": q4_k, "Q5_K": q5_k, "Q6_K": q6_k}
