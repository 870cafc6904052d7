"""Prompts over time: the schedule rule, the schedule node, and the sampler feeding each window its prompt."""
import pytest
import torch

from infinitetalk_lipsync.nodes import NODE_CLASS_MAPPINGS
from infinitetalk_lipsync.nodes.prompt_schedule import InfiniteTalkPromptSchedule
from infinitetalk_lipsync.nodes.sampler import InfiniteTalkSampler
from infinitetalk_lipsync.pipeline.sampler.faithful import COLOUR_REFERENCES
from infinitetalk_lipsync.pipeline.sampler.prompts import ScheduledPrompt, window_prompts
from infinitetalk_lipsync.pipeline.window_plan import plan_windows
from sampler_fakes import FakeDiT, audio_embeds, video
from test_sampler_node import CoreLikeClipVision, CoreLikeVAE, _inputs


def _plan(n=120):
    return plan_windows([n], window=17, motion=5, fps=25.0)  # stride 12: windows start at 0, 12, 24, ...


def _prompts(starts, unit="seconds"):
    return [ScheduledPrompt(s, torch.full((3, 8), float(k)), unit) for k, s in enumerate(starts)]


def test_by_window_index():
    plan = _plan()
    assert window_prompts(_prompts([0, 2, 5], "window"), plan)[:8] == [0, 0, 1, 1, 1, 2, 2, 2]


def test_by_time_takes_the_window_with_the_nearest_start():
    plan = _plan()
    stride_s = plan.stride / plan.fps
    # 1.0 s = frame 25: nearest start 24 (window 2); exactly half way (frame 30) goes to the later window (36)
    got = window_prompts(_prompts([0, 1.0, 30 / 25]), plan)
    assert got[:4] == [0, 0, 1, 2]
    assert stride_s == pytest.approx(0.48)


@pytest.mark.parametrize("starts,unit,match", [([1, 2], "seconds", "first prompt must start at 0"),
                                               ([0, 3, 2], "seconds", "increase"),
                                               ([0, 1.5], "window", "whole")])
def test_bad_schedules_are_clear_errors(starts, unit, match):
    with pytest.raises(ValueError, match=match):
        window_prompts(_prompts(starts, unit), _plan())


def _cond(value):
    return [[torch.full((1, 6, 4096), value), {"pooled_output": None}]]


def test_schedule_node_tags_clip_text_encode_outputs():
    assert NODE_CLASS_MAPPINGS["InfiniteTalkPromptSchedule"] is InfiniteTalkPromptSchedule
    spec = InfiniteTalkPromptSchedule.INPUT_TYPES()
    assert all(opts.get("tooltip") for group in spec.values() for _, opts in group.values())
    (out,) = InfiniteTalkPromptSchedule().schedule(_cond(1.0), "0, 0.5", "seconds", prompt_2=_cond(2.0))
    assert [e[1]["infinitetalk_prompt_start"] for e in out] == [0.0, 0.5]
    assert "pooled_output" in out[0][1]
    with pytest.raises(ValueError, match="one start per prompt"):
        InfiniteTalkPromptSchedule().schedule(_cond(1.0), "0, 1, 2", "seconds", prompt_2=_cond(2.0))
    with pytest.raises(ValueError, match="numbers"):
        InfiniteTalkPromptSchedule().schedule(_cond(1.0), "zero", "seconds")


class _TextSpy(FakeDiT):
    def forward(self, x, t, context, *args, **kw):
        self.texts = getattr(self, "texts", []) + [round(float(context[0, 0, 0]), 3)]
        return super().forward(x, t, context, *args, **kw)


def test_sampler_gives_each_window_its_prompt_and_reports_the_schedule():
    (positive,) = InfiniteTalkPromptSchedule().schedule(_cond(1.0), "0, 2", "window", prompt_2=_cond(2.0))
    model = _TextSpy()
    out = InfiniteTalkSampler().sample(**_inputs(model=model, positive=positive, audio_embeds=audio_embeds([50]),
                                                 cfg=1.0, batch_branches=False))
    # 2 calls (cond, drop_audio) per step, 2 steps per window; 50 frames at 17/5 -> 4 windows
    per_window = [model.texts[k:k + 4] for k in range(0, len(model.texts), 4)]
    assert per_window == [[1.0] * 4, [1.0] * 4, [2.0] * 4, [2.0] * 4]
    text = out["ui"]["text"][0]
    assert "prompt 1 from window 0" in text and "prompt 2 from window 2" in text


def test_sampler_reports_the_active_choices():
    out = InfiniteTalkSampler().sample(**_inputs(audio_embeds=audio_embeds([20, 20]), official_exact=True,
                                                 colour_reference=COLOUR_REFERENCES[2]))
    text = out["ui"]["text"][0]
    assert "official_exact ON" in text and "first frame (official)" in text and "one zero speaker" in text
    out = InfiniteTalkSampler().sample(**_inputs(colour_reference=COLOUR_REFERENCES[2], audio_scale=1.5))
    assert "global anchor (official: first frame (official))" in out["ui"]["text"][0]
