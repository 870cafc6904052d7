"""Rotary position embeddings: the 3-D video RoPE and the 1-D L-RoPE of the audio branch.

Channel pairs ``(x[2j], x[2j+1])`` are complex numbers ``x[2j] + i x[2j+1]`` rotated by
``pos * freq_j``. Angles are computed in float64 once per grid (the official code redoes
this in complex128 on the CPU every call), the rotation itself runs in fp32.
"""
from __future__ import annotations

import torch


def _inv_freq(pairs: int, theta: float = 10000.0) -> torch.Tensor:
    """float64 [pairs]: theta^(-2j / (2 pairs))."""
    return theta ** (-torch.arange(pairs, dtype=torch.float64) * 2.0 / (2 * pairs))


def video_rope_table(grid: tuple[int, int, int], pairs: tuple[int, int, int], device) -> torch.Tensor:
    """complex64 [S, 1, sum(pairs)] rotations for tokens in (frame, row, column) row-major order.

    ``pairs`` splits the head's complex pairs between the frame, row and column axes.
    """
    frames, rows, cols = grid
    axes = []
    for size, count, shape in ((frames, pairs[0], (frames, 1, 1)), (rows, pairs[1], (1, rows, 1)),
                               (cols, pairs[2], (1, 1, cols))):
        angle = torch.outer(torch.arange(size, dtype=torch.float64), _inv_freq(count))
        axes.append(angle.view(*shape, count).expand(frames, rows, cols, count))
    angles = torch.cat(axes, dim=-1).reshape(frames * rows * cols, 1, -1)
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64).to(device)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, S, H, d] by table [S, 1, d/2] (complex64); fp32 math, returns x's dtype."""
    xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(xc * table).flatten(-2).to(x.dtype)


def lrope_table(positions: torch.Tensor, head_dim: int) -> torch.Tensor:
    """complex64 [..., head_dim/2] for fractional 1-D positions (any shape), fp32 angles as official."""
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    angles = positions.float().unsqueeze(-1) * inv
    return torch.polar(torch.ones_like(angles), angles)
