"""Prompts over time: a schedule of text conditionings for long renders. Each window has one text context (the
DiT's text cross-attention sees one prompt per window), so a prompt takes over at a window:

* by window: prompt ``k`` starts at window ``start``; windows ``>= start`` use it until the next one starts;
* by time (seconds): prompt ``k`` starts at the window whose start time is nearest ``start`` (ties to the later
  window), so the switch is off by at most half a window stride (1.44 s at 81/9 frames, 25 fps).
The first prompt must start at 0. The negative prompt is not scheduled.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..window_plan import WindowPlan

UNITS = ("seconds", "window")


@dataclass(frozen=True)
class ScheduledPrompt:
    """tokens: [L, text_dim] text encoder output; start: seconds or a window index (``unit``)."""

    start: float
    tokens: torch.Tensor
    unit: str = "seconds"


def validate_schedule(prompts: list[ScheduledPrompt]) -> None:
    if not prompts:
        raise ValueError("prompt schedule: no prompts.")
    units = {p.unit for p in prompts}
    if len(units) != 1 or not units <= set(UNITS):
        raise ValueError(f"prompt schedule: all starts must use one unit, 'seconds' or 'window' (got {sorted(units)}).")
    starts = [p.start for p in prompts]
    if starts[0] != 0:
        raise ValueError(f"prompt schedule: the first prompt must start at 0 (got {starts[0]:g}).")
    if any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"prompt schedule: starts must increase ({', '.join(f'{s:g}' for s in starts)}).")
    if prompts[0].unit == "window" and any(s != int(s) for s in starts):
        raise ValueError("prompt schedule: window starts must be whole numbers.")


def window_prompts(prompts: list[ScheduledPrompt], plan: WindowPlan) -> list[int]:
    """The index into ``prompts`` that each window of ``plan`` uses."""
    validate_schedule(prompts)
    if prompts[0].unit == "window":
        return [max(k for k, p in enumerate(prompts) if p.start <= w.index) for w in plan.windows]
    # nearest window start: a prompt starting at frame f takes window w when f < w.start + stride/2
    frames = [p.start * plan.fps for p in prompts]
    return [max(k for k, f in enumerate(frames) if f < w.start + plan.stride / 2 - 1e-6 or k == 0)
            for w in plan.windows]


class WindowTexts:
    """The text context [1, L, text_dim] (float32, on ``device``) of each window: ``context`` for every window, or
    the schedule's prompt. Only the prompt in use is kept on the device."""

    def __init__(self, context: torch.Tensor, prompts: list[ScheduledPrompt] | None, plan: WindowPlan, device):
        self._texts = [p.tokens for p in prompts] if prompts else [context]
        self._of_window = window_prompts(prompts, plan) if prompts else [0] * len(plan.windows)
        self._device, self._current = device, (None, None)

    def __call__(self, window_index: int) -> torch.Tensor:
        k = self._of_window[window_index]
        if self._current[0] != k:
            self._current = (k, self._texts[k].float()[None].to(self._device))
        return self._current[1]
