"""Flow-matching solvers. One instance per window (multistep solvers keep history).

Common contract: ``solver = make_solver(name, t, generator)`` with ``t`` the [steps+1] float32
timestep grid (1000 -> 0); ``x_next = solver.step(x, v, i)`` advances the latent ``x`` [..] fp32 from
``t[i]`` to ``t[i+1]`` given the guided velocity ``v`` (official sign: ``x_next ~ x + (s_{i+1}-s_i) v``
with ``s = t/1000``; the model's clean estimate is ``x0 = x - s_i v``).
"""
from __future__ import annotations

import torch

from .dpmpp import DPMpp2M
from .euler import Euler
from .lcm import LCM
from .unipc import UniPC

SOLVERS = {"euler": Euler, "unipc": UniPC, "dpm++": DPMpp2M, "lcm": LCM}


def make_solver(name: str, t: torch.Tensor, generator: torch.Generator | None = None):
    if name not in SOLVERS:
        raise ValueError(f"Unknown solver '{name}'; choose one of {sorted(SOLVERS)}.")
    return SOLVERS[name](t, generator)
