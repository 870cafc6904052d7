"""Face-only dubbing of a video file at flat memory: the face is cropped, generated and pasted back window by
window, never holding the video.

``FacePlan`` is everything the render needs and holds no frame: the crop plan (``CropInfo``: per-frame crop
rectangles and face boxes, [T,4] each) and the paste settings (mask region, dilation, smoothing, feather,
colour match, erode). ``FaceCropSource`` is the sampler loop's source (a ``VideoSource``): it decodes only
the frames a window asks for and crops them as ``crop_frames`` crops an IMAGE. ``FacePaster`` turns a
window's generated crops into full-resolution frames: for output frame ``f`` it decodes the source frame the
render shows there (``VideoSource.index``, the one owner of that rule), builds that frame's mask from the
plan (the ellipse of ``region`` around the face box, dilated, smoothed over neighbouring frames exactly as
``face_masks`` does) and pastes through ``crop.paste_frame`` (the IMAGE path's paste). Pixels outside the
feathered mask are the decoded source frame's own values.

The IMAGE path this equals (same boxes, fps and source length >= the audio's): Face Mask (box/mask, region,
dilation, smoothing, no SAM2) -> Face Crop (the same box/mask input as boxes, no mask) -> sampler on the
crops -> Face Paste with Face Mask's mask.
"""
from __future__ import annotations

from collections import OrderedDict

import dataclasses
from dataclasses import dataclass
from typing import Iterator

import torch

from ..resolution import resize_and_crop
from ..video.reader import VideoFile, VideoSource
from .colour import COLOUR_MODES, ColourMatcher
from .crop import CropInfo, crop_frame, paste_frame, paste_limit
from .face_mask import sam2_region_masks_
from .regions import check_region, dilate, ellipse_masks, smoothed_frame

FACE_PLAN_TYPE = "INFINITETALK_FACE_PLAN"


@dataclass
class FacePlan:
    """The streamed face-only render's plan (no frames: memory does not depend on the video's length).

    crop: the crop of every source frame (``crop.plan_crop``); region/dilation/smoothing: the paste mask
    (``face_mask.face_masks``); feather/colour_match/erode: the blend (``crop.paste_frames``); sam2: an optional
    ``Sam2Model``: the mask follows the face's outline, segmented per window (see ``FacePaster``)."""

    crop: CropInfo
    region: str = "lower_face"
    dilation: int = 8
    smoothing: int = 5
    feather: int = 12
    colour_match: str = "lab"
    erode: int = 0
    sam2: object | None = None

    def __post_init__(self):
        check_region(self.region)
        if self.colour_match not in COLOUR_MODES:
            raise ValueError(f"colour_match '{self.colour_match}' is not one of {', '.join(COLOUR_MODES)}.")

    @property
    def num_frames(self) -> int:
        return int(self.crop.rects.shape[0])

    def fingerprint(self) -> tuple:
        """For resume keys: every setting, and SAM2 by its weights (not its memory-manager wrapper)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "sam2"}
        sam = self.sam2
        return fields, None if sam is None else (sam.name, str(sam.dtype), sam.model)

    def check_video(self, video: VideoFile, name: str = "source_video") -> None:
        """Refuse a video other than the one the plan was made on (frame count and size)."""
        h, w = self.crop.source_size
        if (video.num_frames, video.height, video.width) != (self.num_frames, h, w):
            raise ValueError(f"{name}: {video.num_frames} frames of {video.width}x{video.height}, but the face plan "
                             f"was made on {self.num_frames} frames of {w}x{h}: connect the same Load Video to "
                             f"'InfiniteTalk Face Plan (video)' and to the sampler's {name}.")


class FaceCropSource(VideoSource):
    """The face crops of a video file as the sampler's source: ``frames_at`` decodes the source frames shown
    at the given output frames and crops each per the plan (as ``crop_frames``), then to (th, tw)."""

    def __init__(self, video: VideoFile, plan: FacePlan, fps: float, th: int, tw: int, end: str = "hold"):
        plan.check_video(video)
        super().__init__(video, fps, th, tw, end)
        self.plan = plan

    def frames_at(self, frames) -> torch.Tensor:
        crops = []
        for f in frames:
            i = self.index(f)
            crops.append(crop_frame(self.video.image(i), self.plan.crop, i))
        return resize_and_crop(torch.stack(crops), self.th, self.tw)

    def fingerprint(self) -> tuple:
        """The video file and the whole plan (crop and paste settings): a changed setting changes the key."""
        return super().fingerprint(), self.plan

    def paster(self) -> "FacePaster":
        return FacePaster(self)


class _DecodedFrames:
    """Source frames ``start .. start + count - 1`` as an IMAGE-like sequence ([H,W,3] float 0..1 each), decoded
    when indexed: what SAM2's tracker reads one frame at a time."""

    def __init__(self, video: VideoFile, start: int, count: int):
        self.video, self.start = video, start
        self.shape = (count, video.height, video.width, 3)

    def __getitem__(self, t: int) -> torch.Tensor:
        return self.video.image(self.start + t)


class FacePaster:
    """Pastes each window's generated crops into the full-resolution source frames, in output order.

    The colour match follows the video (a moving average over frames): its state is part of the render's
    checkpoint (``state``/``restore``), so a resumed render pastes exactly as an uninterrupted one.
    With SAM2, each window segments the source frames it shows (plus the smoothing's neighbours) in one
    tracking pass prompted by the face box of its first frame, then takes the region part of the outline
    (the box ellipse where SAM2 loses the face), as ``face_masks`` does for a whole clip. A window depends on
    nothing but its own frames, so resume is exact; the outline may differ slightly from one whole-clip pass."""

    def __init__(self, source: FaceCropSource):
        self.source, self.plan = source, source.plan
        self.height, self.width = source.plan.crop.source_size
        self.matcher = ColourMatcher(self.plan.colour_match)
        self._raw: OrderedDict[int, torch.Tensor] = OrderedDict()  # unsmoothed masks of the last frames used
        self._limit: tuple | None = None
        self.before_segment = lambda: None  # the host's hook before each SAM2 pass (load the model to its device)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def _segment(self, indices: list[int]) -> None:
        """SAM2 masks (region part, dilated) of source frames min(indices) - smoothing/2 .. max + smoothing/2."""
        from .sam2_video import segment_face
        half, last = self.plan.smoothing // 2, self.plan.num_frames - 1
        lo, hi = max(0, min(indices) - half), min(last, max(indices) + half)
        sam = self.plan.sam2
        self.before_segment()
        device = next(sam.model.parameters()).device
        boxes = self.plan.crop.boxes[lo:hi + 1]
        masks, present = segment_face(sam, _DecodedFrames(self.source.video, lo, hi - lo + 1), boxes[0],
                                      device=device)
        sam2_region_masks_(masks, present, boxes, self.plan.region, self.plan.dilation)
        self._raw = OrderedDict((lo + t, masks[t] > 0.5) for t in range(masks.shape[0]))  # bool: 1 byte a pixel

    def _raw_mask(self, j: int) -> torch.Tensor:
        if self.plan.sam2 is not None:
            return self._raw[j]
        mask = self._raw.get(j)
        if mask is None:
            boxes = self.plan.crop.boxes[j:j + 1]
            mask = dilate(ellipse_masks(boxes, self.height, self.width, self.plan.region), self.plan.dilation)[0]
            self._raw[j] = mask
            # Least recently used out: output frames may walk the source backwards (ping-pong past its end).
            while len(self._raw) > self.plan.smoothing + 1:
                self._raw.popitem(last=False)
        else:
            self._raw.move_to_end(j)
        return mask

    def mask(self, i: int) -> torch.Tensor:
        """[H,W] float 0..1: the paste mask of source frame ``i`` (= ``face_masks(...)[i]`` for these boxes)."""
        return smoothed_frame(self._raw_mask, i, self.plan.num_frames, self.plan.smoothing).clamp_(0, 1)

    def _paste_limit(self, rect: tuple) -> torch.Tensor:
        if self._limit is None or self._limit[0] != rect:
            self._limit = rect, paste_limit(rect, self.height, self.width, self.plan.feather)
        return self._limit[1]

    def frames(self, first_frame: int, generated: torch.Tensor) -> Iterator[torch.Tensor]:
        """Output frames ``first_frame ..`` from their generated crops [n,h,w,3]: yields [H,W,3] float32 0..1
        one at a time (nothing but one full-resolution frame and, with SAM2, the window's masks are held)."""
        if self.plan.sam2 is not None:
            self._segment([self.source.index(first_frame + k) for k in range(generated.shape[0])])
        for k in range(generated.shape[0]):
            i = self.source.index(first_frame + k)
            frame = self.source.video.image(i)
            rect = tuple(int(v) for v in self.plan.crop.rects[i])
            paste_frame(frame, generated[k], rect, self.mask(i), self._paste_limit(rect), self.plan.feather,
                        self.matcher, self.plan.erode)
            yield frame

    def state(self) -> dict:
        """What the next window's paste needs (the colour match's running correction)."""
        return {} if self.matcher.state is None else {"face_colour": self.matcher.state.clone()}

    def restore(self, state: dict | None) -> None:
        self.matcher.state = None if not state or "face_colour" not in state else state["face_colour"].clone()
