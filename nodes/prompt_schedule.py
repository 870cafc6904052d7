"""InfiniteTalk Prompt Schedule: prompts over time for long renders. Each prompt is a CONDITIONING from core
``CLIPTextEncode`` (umT5-XXL, the same encoder as a single prompt); this node tags them with their start (seconds
or window index) and returns one CONDITIONING for the sampler's ``positive``."""
from __future__ import annotations

import re

from ..pipeline.sampler.prompts import UNITS

START_KEY, UNIT_KEY = "infinitetalk_prompt_start", "infinitetalk_prompt_unit"
MAX_PROMPTS = 8


def parse_starts(text: str) -> list[float]:
    """'0, 12.5, 30' (commas, spaces or new lines) -> [0.0, 12.5, 30.0]."""
    items = [t for t in re.split(r"[,;\s]+", text.strip()) if t]
    try:
        return [float(t) for t in items]
    except ValueError:
        raise ValueError(f"starts: '{text}' must be numbers separated by commas, one per connected prompt "
                         f"(e.g. '0, 12.5, 30').")


class InfiniteTalkPromptSchedule:
    CATEGORY = "InfiniteTalk/sampling"
    FUNCTION = "schedule"
    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("positive",)
    DESCRIPTION = ("Prompts over time: connect CLIPTextEncode outputs to prompt_1, prompt_2, ... and give each one's "
                   "start; feed the result to the InfiniteTalk Sampler's positive. A prompt takes over at a window "
                   "(the window whose start is nearest its time); the sampler report lists where each starts.")

    @classmethod
    def INPUT_TYPES(cls):
        optional = {f"prompt_{k}": ("CONDITIONING", {"tooltip": f"Prompt {k} (CLIPTextEncode); starts at the "
                                                                 f"{k}th value of 'starts'."})
                    for k in range(2, MAX_PROMPTS + 1)}
        return {
            "required": {
                "prompt_1": ("CONDITIONING", {"tooltip": "The first prompt (CLIPTextEncode, umT5-XXL); starts at 0."}),
                "starts": ("STRING", {"default": "0", "multiline": False,
                                      "tooltip": "Start of each connected prompt, in order, comma separated: "
                                                 "'0, 12.5, 30'. The first is 0."}),
                "unit": (list(UNITS), {"default": UNITS[0],
                                       "tooltip": "seconds: a prompt takes over at the window whose start is nearest "
                                                  "its time (within half a window stride, 1.44 s at 81/9 frames); "
                                                  "window: at that window index (0, 1, 2, ...)."}),
            },
            "optional": optional,
        }

    def schedule(self, prompt_1, starts, unit, **prompts):
        conds = [prompt_1] + [prompts[f"prompt_{k}"] for k in range(2, MAX_PROMPTS + 1) if prompts.get(f"prompt_{k}")
                              is not None]
        values = parse_starts(starts)
        if len(values) != len(conds):
            raise ValueError(f"starts: {len(values)} value(s) for {len(conds)} connected prompt(s); give one start "
                             f"per prompt, the first 0.")
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS} (got '{unit}').")
        out = []
        for k, (cond, start) in enumerate(zip(conds, values), 1):
            try:
                tokens, meta = cond[0][0], cond[0][1]
            except (IndexError, TypeError, KeyError):
                raise ValueError(f"prompt_{k}: expected CONDITIONING from CLIPTextEncode.")
            out.append([tokens, {**meta, START_KEY: float(start), UNIT_KEY: unit}])
        return (out,)


NODE_CLASS_MAPPINGS = {"InfiniteTalkPromptSchedule": InfiniteTalkPromptSchedule}
NODE_DISPLAY_NAME_MAPPINGS = {"InfiniteTalkPromptSchedule": "InfiniteTalk Prompt Schedule"}
