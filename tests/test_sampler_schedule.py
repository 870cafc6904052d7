"""Timestep grid (exact vs golden), partial-denoise start, add_noise and the official Euler step."""
import re

import pytest
import torch

import golden
from infinitetalk_lipsync.pipeline.sampler.schedule import add_noise, make_schedule, timesteps
from infinitetalk_lipsync.pipeline.sampler.solvers import make_solver


def _cases():
    keys = list(golden.case("e_schedule")["timesteps"])
    cases = [(int(m.group(1)), float(m.group(2)), k) for k in keys
             if (m := re.fullmatch(r"steps(\d+)_shift([\d.]+)", k))]
    assert len(cases) == len(keys), f"unparsed schedule names: {keys}"
    return cases


def test_every_golden_schedule_is_bit_exact():
    cases = _cases()
    assert cases
    g = golden.tensors("schedule.safetensors")
    for steps, shift, key in cases:
        t = timesteps(steps, shift)
        assert t.dtype == torch.float32
        assert torch.equal(t, g[f"timesteps.{key}"]), key
        assert t.tolist() == golden.case("e_schedule")["timesteps"][key]


def test_add_noise_matches_official():
    g = golden.tensors("schedule.safetensors")
    for key in [k for k in g if k.startswith("add_noise.t")]:
        t = float(key[len("add_noise.t"):])
        golden.assert_close(add_noise(g["add_noise.original"], g["add_noise.noise"], torch.tensor([t])), g[key],
                            rel=1e-6, what=key)


def test_euler_step_with_motion_overwrite_matches_official():
    g = golden.tensors("schedule.safetensors")
    meta = golden.case("e_schedule")["euler"]
    n_lat = meta["cur_motion_frames_latent_num"]
    steps, shift = (int(v) for v in re.search(r"steps=(\d+), shift=(\d+)", meta["run"]).groups())
    t = timesteps(steps, shift)
    i = int((t == g["euler.t_i"]).nonzero()[0])
    x = g["euler.latent_in"].clone()
    x[:, :n_lat] = g["euler.latent_motion_frames"]  # before the step (already so in the golden input)
    assert torch.equal(x, g["euler.latent_in"])
    after = make_solver("euler", t).step(x, g["euler.noise_pred_guided"], i)
    assert torch.equal(after, g["euler.latent_after_update"])
    after[:, :n_lat] = g["euler.latent_motion_frames"]  # after the step: clean motion latents again
    assert torch.equal(after, g["euler.latent_out"])


@pytest.mark.parametrize("steps,denoise,start", [(40, 1.0, 0), (40, 0.4, 24), (4, 0.5, 2), (4, 0.01, 3), (8, 1e-9, 7)])
def test_partial_denoise_start_step(steps, denoise, start):
    s = make_schedule(steps, 5.0, denoise)
    assert s.start == start and s.steps_run == steps - start
    assert torch.equal(s.t, timesteps(steps, 5.0))


@pytest.mark.parametrize("bad", [dict(steps=0, shift=5.0), dict(steps=4, shift=0.0), dict(steps=4, shift=5.0, denoise=0.0),
                                 dict(steps=4, shift=5.0, denoise=1.5)])
def test_bad_schedule_settings_are_clear_errors(bad):
    with pytest.raises(ValueError, match="steps|shift|denoise"):
        make_schedule(**bad)


@pytest.mark.parametrize("steps,denoise,warns", [(1, 0.5, "no effect"), (2, 0.5, "almost no noise"),
                                                 (8, 0.125, "almost no noise"), (4, 0.5, None), (40, 0.4, None),
                                                 (40, 1.0, None)])
def test_effective_start_noise_and_warning(steps, denoise, warns):
    s = make_schedule(steps, 7.0, denoise)
    assert s.start_noise == float(s.t[s.start]) / 1000
    warning = s.denoise_warning(denoise)
    assert (warning is None) if warns is None else (warns in warning and f"denoise {denoise:g}" in warning)
