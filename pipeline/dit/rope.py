"""Rotary position embeddings: the 3-D video RoPE and the 1-D L-RoPE of the audio branch.

Channel pairs ``(x[2j], x[2j+1])`` are complex numbers ``x[2j] + i x[2j+1]`` rotated by
``pos * freq_j``. Angles are computed in float64 once per grid (the official code redoes
this in complex128 on the CPU every call), the rotation itself runs in fp32.
Rotations are stored as real fp32 ``[..., pairs, 2]`` (cos, sin): eager code views them as
complex64 (one fused multiply), compiled code uses the real form (Inductor has no complex codegen).
"""
from __future__ import annotations

import torch


def _inv_freq(pairs: int, theta: float = 10000.0) -> torch.Tensor:
    """float64 [pairs]: theta^(-2j / (2 pairs))."""
    return theta ** (-torch.arange(pairs, dtype=torch.float64) * 2.0 / (2 * pairs))


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1).float()


def video_rope_table(grid: tuple[int, int, int], pairs: tuple[int, int, int], device) -> torch.Tensor:
    """fp32 [S, 1, sum(pairs), 2] rotations for tokens in (frame, row, column) row-major order.

    ``pairs`` splits the head's complex pairs between the frame, row and column axes.
    """
    frames, rows, cols = grid
    axes = []
    for size, count, shape in ((frames, pairs[0], (frames, 1, 1)), (rows, pairs[1], (1, rows, 1)),
                               (cols, pairs[2], (1, 1, cols))):
        angle = torch.outer(torch.arange(size, dtype=torch.float64), _inv_freq(count))
        axes.append(angle.view(*shape, count).expand(frames, rows, cols, count))
    angles = torch.cat(axes, dim=-1).reshape(frames * rows * cols, 1, -1)
    return _rotation(angles).to(device)


def apply_rope(x: torch.Tensor, table: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Rotate x [B, S, H, d] by table [S, 1, d/2, 2] (broadcastable) in fp32 -> ``out_dtype`` (default x's)."""
    out_dtype = out_dtype or x.dtype
    pairs = x.float().unflatten(-1, (-1, 2))
    if torch.compiler.is_compiling():
        cos, sin = table[..., 0], table[..., 1]
        real, imag = pairs[..., 0], pairs[..., 1]
        return torch.stack([real * cos - imag * sin, imag * cos + real * sin], dim=-1).flatten(-2).to(out_dtype)
    rotated = torch.view_as_complex(pairs) * torch.view_as_complex(table)
    return torch.view_as_real(rotated).flatten(-2).to(out_dtype)


def lrope_table(positions: torch.Tensor, head_dim: int) -> torch.Tensor:
    """fp32 [..., head_dim/2, 2] rotations for fractional 1-D positions (any shape), fp32 angles as official."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    return _rotation(positions.float().unsqueeze(-1) * inv)
