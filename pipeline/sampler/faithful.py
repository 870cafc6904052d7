"""The places where this pack deliberately differs from the official InfiniteTalk code, and the switch that
takes the official choice for every one of them (``official_exact``).

| choice | official | ours (option) |
|---|---|---|
| two speakers: audio of the no-audio guidance branches | one zero speaker (the model's one-speaker path) | silence both speakers |
| colour-correction reference | the first reference frame, for every window | each window's own reference (V2V default) or a global anchor |
| colour-match method | Lab mean/std | histogram, MKL |

Always official (no choice): resizing (PIL bilinear on uint8, ``resolution.resize_and_crop``). Always ours:
source frames are looked up by timestamp (``source.Source``): identical to the official frame-number lookup at
25 fps, and in sync at other frame rates where the official one drifts.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..color import COLOUR_METHODS
from .branches import NULL_AUDIO

COLOUR_REFERENCES = ("first frame (official)", "each window's reference", "global anchor")


@dataclass(frozen=True)
class Choices:
    null_audio: str = NULL_AUDIO[0]
    colour_reference: str = COLOUR_REFERENCES[1]
    colour_method: str = COLOUR_METHODS[0]


OFFICIAL = Choices(NULL_AUDIO[0], COLOUR_REFERENCES[0], COLOUR_METHODS[0])


def active_choices(settings) -> Choices:
    """The choices a run uses: the official ones with ``settings.official_exact``, else the settings' own."""
    if settings.official_exact:
        return OFFICIAL
    choices = Choices(settings.null_audio, settings.colour_reference, settings.colour_method)
    for name, allowed in (("null_audio", NULL_AUDIO), ("colour_reference", COLOUR_REFERENCES),
                          ("colour_method", COLOUR_METHODS)):
        if getattr(choices, name) not in allowed:
            raise ValueError(f"{name} '{getattr(choices, name)}' is not one of: {', '.join(allowed)}.")
    return choices


def describe(settings, speakers: int, is_image: bool) -> str:
    """One line for the node report: which choice is active where ours and the official differ."""
    c = active_choices(settings)
    mark = lambda value, official: value if value == official else f"{value} (official: {official})"
    parts = [("official_exact ON: " if settings.official_exact else "official_exact off: ")]
    if speakers == 2:
        parts.append(f"2-speaker no-audio branch: {mark(c.null_audio, OFFICIAL.null_audio)}; ")
    if settings.colour_strength > 0:
        ref = "the image (all references agree in I2V)" if is_image else mark(c.colour_reference,
                                                                            OFFICIAL.colour_reference)
        parts.append(f"colour {mark(c.colour_method, OFFICIAL.colour_method)} to {ref}; ")
    else:
        parts.append("colour correction off; ")
    parts.append("resize: PIL bilinear (official); source frames by timestamp (= official at 25 fps)")
    extra = [f"{name} {value:g}" for name, value, official in (("audio_scale", settings.audio_scale, 1.0),
                                                              ("denoise", settings.denoise, 1.0)) if value != official]
    if settings.solver != "euler":
        extra.append(f"solver {settings.solver}")
    if settings.official_exact and extra:
        parts.append(f"; not in the official pipeline: {', '.join(extra)}")
    return "".join(parts)
