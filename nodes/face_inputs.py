"""What the face nodes (Face Mask, Face Crop, Face Paste, Composite, Face Plan (video)) share about their inputs:
widget specs, and reading the ``box`` widget.

Saved workflows address widgets by position: a spec changed here changes every node that uses it. Where nodes word
a tooltip for their own use, the range lives here and each node adds its tooltip with ``tip``.
"""
from __future__ import annotations

from ..pipeline.mask.colour import COLOUR_MODES
from ..pipeline.mask.face_box import check_box_in_frame, parse_box
from ..pipeline.mask.regions import REGIONS


def tip(spec: tuple, tooltip: str) -> tuple:
    """A widget ``spec`` (type, options without a tooltip) with ``tooltip`` as its last option."""
    kind, options = spec
    return kind, {**options, "tooltip": tooltip}


REGION = (list(REGIONS), {"default": "lower_face", "tooltip":
          "What to regenerate: 'face' (forehead to chin), 'lower_face' (mouth, cheeks and chin; eyes untouched) "
          "or 'mouth' (lips and a little around them)."})
DETECT_EVERY = ("INT", {"default": 5, "min": 1, "max": 250, "tooltip":
                "Automatic face detection runs on every N-th frame and is interpolated between them "
                "(only when neither a mask nor a box is given)."})
BOX = ("STRING", {"default": "", "tooltip":
       "Optional face box 'x0,y0,x1,y1' in pixels of the first frame. Used when no mask is connected; "
       "leave empty to detect the face automatically (OpenCV)."})

# The paste's blend, in this order on every node that pastes (Face Paste, Composite, Face Plan).
BLEND = {
    "feather": ("INT", {"default": 12, "min": 0, "max": 128, "tooltip":
                "Soft-edge width in pixels. The blend fades over this many pixels around the mask edge; pixels "
                "farther than this outside the mask are exactly the source."}),
    "colour_match": (list(COLOUR_MODES), {"default": "lab", "tooltip":
                     "Match the generated colours to the source over a band just inside the mask edge, so no seam "
                     "shows: 'lab' (mean and spread in Lab), 'histogram' (per RGB channel) or 'none'."}),
    "erode": ("INT", {"default": 0, "min": 0, "max": 128, "tooltip":
              "Shrink the mask by this many pixels before feathering (keeps more of the source near the edge)."}),
}

# Ranges without tooltips (each node words its own): the face crop (Face Crop, Face Plan) and the mask's
# growth and smoothing (Face Mask, Face Plan).
CROP_SIDE = ("INT", {"default": 512, "min": 64, "max": 2048, "step": 16})
CROP_PADDING = ("FLOAT", {"default": 0.6, "min": 0.0, "max": 4.0, "step": 0.05})
CROP_WINDOW = ("INT", {"default": 0, "min": 0, "max": 100000})
DILATION = ("INT", {"default": 8, "min": -64, "max": 256})
SMOOTHING = ("INT", {"default": 5, "min": 1, "max": 51})

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


def box_or_none(box: str) -> Box | None:
    """The ``box`` widget's x0,y0,x1,y1, or None when it is empty; a bad one raises naming the widget."""
    try:
        return parse_box(box)
    except ValueError as err:
        raise ValueError(f"box: {err}") from None


def box_in_frame(typed: Box, height: int, width: int) -> Box:
    """A typed box (``box_or_none``) checked against the ``width`` x ``height`` frame; one outside it raises naming
    the widget."""
    try:
        check_box_in_frame(typed, height, width)
    except ValueError as err:
        raise ValueError(f"box: {err}") from None
    return typed
