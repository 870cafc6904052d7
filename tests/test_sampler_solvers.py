"""Solvers on a flow with an analytic solution: Gaussian data N(mu, sd^2) under x_s = (1-s) x0 + s eps.

The exact velocity is ``v(z, s) = -mu + (s - (1-s) sd^2)/V(s) * (z - (1-s) mu)``, ``V = (1-s)^2 sd^2 + s^2``,
and the ODE from s = 1 maps eps to ``mu + sd*eps`` at s = 0.
"""
import pytest
import torch

from infinitetalk_lipsync.pipeline.sampler.schedule import timesteps
from infinitetalk_lipsync.pipeline.sampler.solvers import SOLVERS, make_solver

MU, SD = 0.7, 0.5


def _velocity(z, s):
    return -MU + (s - (1 - s) * SD ** 2) / ((1 - s) ** 2 * SD ** 2 + s ** 2) * (z - (1 - s) * MU)


def _solve(name, t, eps, generator=None):
    solver = make_solver(name, t, generator)
    z = eps.clone()
    for i in range(t.numel() - 1):
        z = solver.step(z, _velocity(z, float(t[i]) / 1000), i)
    return z


def _error(name, steps):
    eps = torch.linspace(-2, 2, 101, dtype=torch.float64)
    t = torch.linspace(1000, 0, steps + 1, dtype=torch.float64)
    return (_solve(name, t, eps) - (MU + SD * eps)).abs().max().item()


def test_euler_converges_first_order():
    e = [_error("euler", n) for n in (40, 80, 160)]
    assert e[2] < 0.02
    for a, b in zip(e, e[1:]):
        assert 1.7 < a / b < 2.3


@pytest.mark.parametrize("name", ["dpm++", "unipc"])
def test_multistep_solvers_converge_faster_than_euler(name):
    e = [_error(name, n) for n in (40, 80, 160)]
    assert e[2] < 1e-3
    assert e[0] / e[2] > 9  # at least ~second order
    assert all(mine < _error("euler", n) / 5 for mine, n in zip(e, (40, 80, 160)))


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_point_data_is_recovered_exactly_on_the_official_grid(name):
    """For a single data point the clean estimate is exact, so every solver must land on it at s = 0."""
    x0 = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1))
    t = timesteps(6, 5.0)
    solver = make_solver(name, t, torch.Generator().manual_seed(2))
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    for i in range(6):
        s = float(t[i]) / 1000
        z = solver.step(z, (z - x0) / s, i)
    torch.testing.assert_close(z, x0, atol=1e-4, rtol=0)


def test_lcm_is_reproducible_from_the_generator():
    t = timesteps(4, 5.0)
    eps = torch.randn(50, generator=torch.Generator().manual_seed(0))
    a = _solve("lcm", t, eps, torch.Generator().manual_seed(9))
    b = _solve("lcm", t, eps, torch.Generator().manual_seed(9))
    c = _solve("lcm", t, eps, torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_unknown_solver_is_a_clear_error():
    with pytest.raises(ValueError, match="euler"):
        make_solver("heun", timesteps(4, 5.0))
