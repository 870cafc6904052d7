"""The official shifted linear timestep grid, and where a partial (``denoise`` < 1) run starts.

Official (``wan/multitalk.py:638-643``, ``timestep_transform``): ``numpy.linspace(1000, 1, steps,
dtype=float32)`` (computed in float64, rounded once to float32), a trailing 0, then elementwise in
float32 ``t' = 1000 * shift*s / (1 + (shift-1)*s)`` with ``s = t/1000``. We reproduce it bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass

import math

import torch


def timesteps(steps: int, shift: float) -> torch.Tensor:
    """[steps+1] float32: t_0 = 1000 ... t_{steps-1}, then 0. The model sees t_0..t_{steps-1}."""
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1 (got {steps}).")
    if not shift > 0:
        raise ValueError(f"shift must be > 0 (got {shift}); the seeds use 3/5 (480p/720p), 7, or 11 with lightx2v.")
    grid = torch.linspace(1000.0, 1.0, int(steps), dtype=torch.float64).to(torch.float32)
    grid = torch.cat([grid, torch.zeros(1, dtype=torch.float32)])
    s = grid / 1000
    return (shift * s / (1 + (shift - 1) * s)) * 1000


@dataclass(frozen=True)
class Schedule:
    """The timesteps a window runs.

    ``t``: [steps+1] float32 full official grid. ``start``: index of the first step run. A full run
    (``denoise`` = 1) starts at 0 from pure noise. With ``denoise`` = d < 1 (SDEdit) the grid is the same
    ``steps``-step grid; the run skips its first ``steps - max(1, round(steps*d))`` steps and starts at
    ``start`` from the source latents noised to ``t[start]``:
    ``z = (1 - t[start]/1000) * source + t[start]/1000 * noise`` (the official ``add_noise``).
    E.g. 40 steps, d = 0.4: start = 24, 16 steps run.
    """

    t: torch.Tensor
    start: int

    @property
    def steps_run(self) -> int:
        return self.t.numel() - 1 - self.start

    @property
    def start_noise(self) -> float:
        """Noise fraction of the first latent the run denoises: t[start]/1000 (1 = pure noise)."""
        return float(self.t[self.start]) / 1000

    def denoise_warning(self, denoise: float) -> str | None:
        """Why the effective start is not what ``denoise`` suggests, or None.

        With few steps the grid cannot express ``denoise``: either no step is skipped (the run starts from
        pure noise and ignores the source), or only the last step of the shifted grid remains, whose
        noise level is tiny (the source passes through almost unchanged)."""
        steps = self.t.numel() - 1
        if denoise < 1.0 and self.start == 0:
            return (f"WARNING: denoise {denoise:g} has no effect with {steps} step{'s' * (steps != 1)}: the run "
                    f"starts from pure noise (t=1000), like denoise 1. Use at least {math.ceil(1.5 / (1 - denoise))} "
                    f"steps, or denoise 1.")
        if denoise < 1.0 and self.start_noise < denoise / 4:
            return (f"WARNING: denoise {denoise:g} with {steps} steps starts at t={float(self.t[self.start]):.1f} "
                    f"(noise level {self.start_noise:.3f}): almost no noise, the source passes through nearly "
                    f"unchanged. Use more steps or a higher denoise.")
        return None


def make_schedule(steps: int, shift: float, denoise: float = 1.0) -> Schedule:
    if not 0.0 < float(denoise) <= 1.0:
        raise ValueError(f"denoise must be in (0, 1] (got {denoise}); 1 = full generation, 0.35-0.5 for V2V.")
    t = timesteps(steps, shift)
    run = max(1, int(round(int(steps) * float(denoise))))
    return Schedule(t=t, start=int(steps) - run)


def add_noise(clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Official ``add_noise``: ``(1 - t/1000) * clean + t/1000 * noise`` (float32)."""
    t = torch.as_tensor(t, dtype=torch.float32)
    s = t / 1000
    return (1 - s) * clean + s * noise
