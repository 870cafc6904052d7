"""UniPC (bh2, order 2, data prediction) for flow matching: alpha = 1 - s, sigma = s, lambda = log(alpha/sigma).

Predictor UniP-2 with a UniC corrector applied when the next velocity arrives; first order on the first
step (no history) and on the last step (s_next = 0: the update is the clean estimate itself).
"""
from __future__ import annotations

import math

import torch

from .dpmpp import _lam


class UniPC:
    def __init__(self, t: torch.Tensor, generator: torch.Generator | None = None):
        self.s = [float(v) for v in (t.to(torch.float64) / 1000)]
        self.x0s: list[tuple[int, torch.Tensor]] = []  # (grid index, clean estimate), newest last
        self.last = None  # (grid index it stepped from, x before the predictor, order used)

    def _coeffs(self, i_from: int, i_to: int):
        """sigma_t/sigma_s, alpha_t*expm1(hh), hh = -(lambda_t - lambda_s) for the step s_{i_from} -> s_{i_to}.
        With bh2, B(h) = expm1(hh) = h_phi_1, so the same factor scales the clean estimate and the corrections."""
        s0, st = self.s[i_from], self.s[i_to]
        hh = -(_lam(st) - _lam(s0))
        return st / s0, (1 - st) * math.expm1(hh), hh

    def _update(self, x, m0, i_from, i_to, d1, rho):
        ratio, a_phi, _ = self._coeffs(i_from, i_to)
        out = ratio * x - a_phi * m0
        if d1 is not None:
            out = out - a_phi * rho * d1
        return out

    def _rho_c(self, i_from: int, i_to: int, order: int) -> list[float]:
        """Corrector weights: order 1 -> [0.5]; order 2 -> solve R rho = b (bh2)."""
        if order == 1:
            return [0.5]
        hh = self._coeffs(i_from, i_to)[2]
        rk = self._rk(i_from, i_to)
        h_phi_k = math.expm1(hh) / hh - 1
        b_h = math.expm1(hh)
        b1 = h_phi_k / b_h
        h_phi_k = h_phi_k / hh - 1 / 2
        b2 = h_phi_k * 2 / b_h
        # R = [[1, 1], [rk, 1]]
        det = 1 - rk
        return [(b1 - b2) / det, (b2 - rk * b1) / det]

    def _rk(self, i_from: int, i_to: int) -> float:
        i_prev = self.x0s[-2][0]
        h = _lam(self.s[i_to]) - _lam(self.s[i_from])
        return (_lam(self.s[i_prev]) - _lam(self.s[i_from])) / h

    def step(self, x: torch.Tensor, v: torch.Tensor, i: int) -> torch.Tensor:
        s, s_next = self.s[i], self.s[i + 1]
        x0 = x - s * v
        if self.last is not None and self.last[0] == i - 1:
            i_from, x_last, order = self.last
            m0 = self.x0s[-1][1]
            d1_t = x0 - m0
            rho = self._rho_c(i_from, i, order)
            corr = rho[-1] * d1_t
            if order == 2:
                rk = self._rk(i_from, i)
                corr = corr + rho[0] * (self.x0s[-2][1] - m0) / rk
            x = self._update(x_last, m0, i_from, i, corr, 1.0)
        self.x0s = (self.x0s + [(i, x0)])[-2:]
        if s_next <= 0.0:
            self.last = None
            return x0
        usable = len(self.x0s) == 2 and self.x0s[0][0] == i - 1 and s < 1.0 and self.s[i - 1] < 1.0
        order = 2 if usable else 1
        self.last = (i, x, order)
        if order == 1:
            return self._update(x, x0, i, i + 1, None, 0.0)
        rk = self._rk(i, i + 1)
        d1 = (self.x0s[-2][1] - x0) / rk
        return self._update(x, x0, i, i + 1, d1, 0.5)
