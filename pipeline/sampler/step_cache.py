"""Step caching: skip the 40 transformer blocks on steps where they would change little, reusing the
blocks' residual (output hidden state minus input) of the last computed step, per model call.

Three published rules (off by default; none pays with 4-step distilled LoRAs, whose few steps are
all forced):

* **TeaCache** (ali-vilab/TeaCache, ``TeaCache4Wan2.1``, as the official InfiniteTalk uses it with
  ``use_ret_steps``): ``acc += poly(mean|e0 - e0_prev| / mean|e0_prev|)`` with the published
  Wan 2.1 I2V 480P/720P polynomial; compute and reset when ``acc >= threshold``; the first 5 steps
  are computed. ``e0`` (the 6 x dim modulation) depends on the timestep only.
* **MagCache** (Zehong-Ma/MagCache, ``MagCache4Wan2.1``): after the first ``retention`` fraction of
  steps, ``ratio *= mag_ratio[step]; err += |1 - ratio|; k += 1``; skip while ``err < threshold and
  k <= K``, else compute and reset. The published 40-step I2V 480P/720P magnitude ratios (cond
  entries) are nearest-interpolated to the schedule's step count, as the reference does.
* **EasyCache** (H-EmbodVis/EasyCache, ``EasyCache4Wan2.1``): ``k = (mean|out - out_prev| /
  mean|out_prev|) / (mean|in - in_prev| / mean|in_prev|)`` from the last two computed steps;
  ``acc += k * mean|in - in_prev| / mean|out_prev|``; skip while ``acc < threshold``. The first 10 of
  40 steps (scaled to the run) and the last step are computed. Measured here on the blocks' input
  and output hidden state (the reference measures the model's input latent and output velocity).

One decision per step, taken on the step's first model call (``cond``) and applied to every
guidance branch; each branch keeps its own residual. Steps count within the window's run (a
``denoise`` < 1 run starts at its first run step); MagCache reads its ratio at the step's place in
the full schedule. A new cache per window: nothing is reused across windows.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

METHODS = ("off", "teacache", "magcache", "easycache")
DEFAULT_THRESHOLD = {"teacache": 0.2, "magcache": 0.12, "easycache": 0.05}

# TeaCache4Wan2.1 teacache_generate.py, i2v, use_ret_steps=True (input e0), highest degree first.
TEACACHE_E0 = {
    "480": (2.57151496e+05, -3.54229917e+04, 1.40286849e+03, -1.35890334e+01, 1.32517977e-01),
    "720": (8.10705460e+03, 2.13393892e+03, -3.72934672e+02, 1.66203073e+01, -4.17769401e-02),
}
TEACACHE_RET_STEPS = 5

# MagCache4Wan2.1 magcache_generate.py, I2V, 40 steps, (cond, uncond) interleaved.
MAG_RATIOS = {
    "480": [1.0] * 2 + [
        0.98783, 0.98993, 0.97559, 0.97593, 0.98311, 0.98319, 0.98202, 0.98225, 0.9888, 0.98878, 0.98762, 0.98759,
        0.98957, 0.98971, 0.99052, 0.99043, 0.99383, 0.99384, 0.98857, 0.9886, 0.99065, 0.99068, 0.98845, 0.98847,
        0.99057, 0.99057, 0.98957, 0.98961, 0.98601, 0.9861, 0.98823, 0.98823, 0.98756, 0.98759, 0.98808, 0.98814,
        0.98721, 0.98724, 0.98571, 0.98572, 0.98543, 0.98544, 0.98157, 0.98165, 0.98411, 0.98413, 0.97952, 0.97953,
        0.98149, 0.9815, 0.9774, 0.97742, 0.97825, 0.97826, 0.97355, 0.97361, 0.97085, 0.97087, 0.97056, 0.97055,
        0.96588, 0.96587, 0.96113, 0.96124, 0.9567, 0.95681, 0.94961, 0.94969, 0.93973, 0.93988, 0.93217, 0.93224,
        0.91878, 0.91896, 0.90955, 0.90954, 0.92617, 0.92616],
    "720": [1.0] * 2 + [
        0.99428, 0.99498, 0.98588, 0.98621, 0.98273, 0.98281, 0.99018, 0.99023, 0.98911, 0.98917, 0.98646, 0.98652,
        0.99454, 0.99456, 0.9891, 0.98909, 0.99124, 0.99127, 0.99102, 0.99103, 0.99215, 0.99212, 0.99515, 0.99515,
        0.99576, 0.99572, 0.99068, 0.99072, 0.99097, 0.99097, 0.99166, 0.99169, 0.99041, 0.99042, 0.99201, 0.99198,
        0.99101, 0.99101, 0.98599, 0.98603, 0.98845, 0.98844, 0.98848, 0.98851, 0.98862, 0.98857, 0.98718, 0.98719,
        0.98497, 0.98497, 0.98264, 0.98263, 0.98389, 0.98393, 0.97938, 0.9794, 0.97535, 0.97536, 0.97498, 0.97499,
        0.973, 0.97301, 0.96827, 0.96828, 0.96261, 0.96263, 0.95335, 0.9534, 0.94649, 0.94655, 0.93397, 0.93414,
        0.91636, 0.9165, 0.89088, 0.89109, 0.8679, 0.86768],
}
MAG_K, MAG_RETENTION = 2, 0.2
EASY_RET_FRACTION = 10 / 40


def table_for(pixels: int) -> str:
    """'720' for videos nearer 1280x720 than 832x480 in area, else '480'."""
    return "720" if pixels > (832 * 480 + 1280 * 720) / 2 else "480"


def poly(coefficients, x: float) -> float:
    """``numpy.poly1d(coefficients)(x)`` (highest degree first)."""
    out = 0.0
    for c in coefficients:
        out = out * x + c
    return out


def nearest_interp(values: list[float], length: int) -> list[float]:
    """MagCache's ``nearest_interp``: ``values[round(i * (n-1)/(length-1))]``."""
    if length == 1:
        return [values[-1]]
    scale = (len(values) - 1) / (length - 1)
    return [values[int(round(i * scale))] for i in range(length)]


def rel_l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """mean|a - b| / mean|b| (one host sync)."""
    return float((a.float() - b.float()).abs().mean() / b.float().abs().mean())


class TeaCacheRule:
    def __init__(self, threshold: float, table: str):
        self.threshold, self.coefficients = threshold, TEACACHE_E0[table]
        self.acc, self.previous = 0.0, None

    def skip(self, position: int, steps: int, e0: torch.Tensor) -> bool:
        inp = e0[:1]
        if position < TEACACHE_RET_STEPS or self.previous is None:
            decision, self.acc = False, 0.0
        else:
            self.acc += poly(self.coefficients, rel_l1(inp, self.previous))
            decision = self.acc < self.threshold
            if not decision:
                self.acc = 0.0
        self.previous = inp.clone()
        return decision


class MagCacheRule:
    def __init__(self, threshold: float, table: str, total_steps: int, k: int = MAG_K,
                 retention: float = MAG_RETENTION):
        self.threshold, self.k, self.retention = threshold, k, retention
        self.ratios = nearest_interp(MAG_RATIOS[table][0::2], total_steps)
        self.ratio, self.err, self.count = 1.0, 0.0, 0

    def skip(self, position: int, steps: int, step_index: int) -> bool:
        if position < int(steps * self.retention):
            return False
        self.ratio *= self.ratios[step_index]
        self.err += abs(1 - self.ratio)
        self.count += 1
        if self.err < self.threshold and self.count <= self.k:
            return True
        self.ratio, self.err, self.count = 1.0, 0.0, 0
        return False


class EasyCacheRule:
    def __init__(self, threshold: float):
        self.threshold = threshold
        self.acc, self.k = 0.0, None
        self.prev_in = self.prev_out = None  # of the last computed step
        self.last_in = None  # of the last step, computed or not

    def skip(self, position: int, steps: int, h_in: torch.Tensor) -> bool:
        forced = position < max(1, round(steps * EASY_RET_FRACTION)) or position == steps - 1
        decision = False
        if not forced and self.k is not None and self.last_in is not None:
            self.acc += self.k * float((h_in.float() - self.last_in.float()).abs().mean()
                                       / self.prev_out.float().abs().mean())
            decision = self.acc < self.threshold
        if not decision:
            self.acc = 0.0
        self.last_in = h_in
        return decision

    def computed(self, h_in: torch.Tensor, h_out: torch.Tensor) -> None:
        if self.prev_in is not None:
            input_change = rel_l1(h_in, self.prev_in)
            self.k = rel_l1(h_out, self.prev_out) / input_change if input_change > 0 else None
        self.prev_in, self.prev_out = h_in, h_out


class StepCache:
    """One window's cache. The sampler calls :meth:`begin_step` before each step's model calls; the
    model calls :meth:`run_blocks` (``model.step_cache``) once per forward."""

    def __init__(self, method: str, threshold: float, total_steps: int, start: int, pixels: int):
        if method not in METHODS[1:]:
            raise ValueError(f"step cache {method!r} unknown: choose one of {', '.join(METHODS)}")
        if not threshold > 0:
            threshold = DEFAULT_THRESHOLD[method]
        self.method, self.start, self.steps = method, start, total_steps - start
        table = table_for(pixels)
        self.rule = {"teacache": lambda: TeaCacheRule(threshold, table),
                     "magcache": lambda: MagCacheRule(threshold, table, total_steps),
                     "easycache": lambda: EasyCacheRule(threshold)}[method]()
        self.residuals: dict[int, torch.Tensor] = {}
        self.step_index, self.slot, self.skipping = start, 0, False
        self.calls = self.skipped = 0

    def begin_step(self, step_index: int) -> None:
        self.step_index, self.slot = step_index, 0

    def run_blocks(self, h: torch.Tensor, e: torch.Tensor, e0: torch.Tensor, compute) -> torch.Tensor:
        """h [B, S, D] hidden state before the blocks; compute(h) runs them."""
        slot, position = self.slot, self.step_index - self.start
        self.slot += 1
        self.calls += 1
        if slot == 0:
            if self.method == "teacache":
                self.skipping = self.rule.skip(position, self.steps, e0)
            elif self.method == "magcache":
                self.skipping = self.rule.skip(position, self.steps, self.step_index)
            else:
                self.skipping = self.rule.skip(position, self.steps, h)
        residual = self.residuals.get(slot)
        if self.skipping and residual is not None and residual.shape == h.shape:
            self.skipped += 1
            return h + residual
        out = compute(h)
        self.residuals[slot] = out - h
        if slot == 0 and self.method == "easycache":
            self.rule.computed(h, out)
        return out


@contextmanager
def attached(model, method: str, threshold: float, total_steps: int, start: int, pixels: int, stats: dict | None):
    """``model.step_cache`` set for one window (None when ``method`` is 'off'); the counts of model
    calls and skipped calls are added to ``stats`` ('forwards', 'forwards_skipped')."""
    cache = None if method == "off" else StepCache(method, threshold, total_steps, start, pixels)
    if cache is None or not hasattr(model, "step_cache"):
        yield None
        return
    model.step_cache = cache
    try:
        yield cache
    finally:
        model.step_cache = None
        if stats is not None:
            stats["forwards"] = stats.get("forwards", 0) + cache.calls
            stats["forwards_skipped"] = stats.get("forwards_skipped", 0) + cache.skipped


def summary(stats: dict) -> str:
    calls, skipped = stats.get("forwards", 0), stats.get("forwards_skipped", 0)
    share = f" ({100 * skipped / calls:.0f} %)" if calls else ""
    return f"step cache: {skipped} of {calls} model calls skipped{share}"

