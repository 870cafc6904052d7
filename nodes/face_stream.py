"""InfiniteTalk Face Plan (video): face-only dubbing of a video of any length at flat memory.

The node tracks the face through a VIDEO holding no frames (key frames decoded on demand; boxes only), plans
the crop and carries the paste settings; the sampler, given the same video as ``source_video`` and this plan
as ``face_plan``, crops, generates and pastes window by window into a full-resolution mp4 (see
``pipeline/mask/face_stream``). The IMAGE nodes (Face Mask -> Face Crop -> Face Paste) stay for short clips.
"""
from __future__ import annotations

import torch

from . import host
from .face_inputs import BLEND, BOX, CROP_PADDING, CROP_SIDE, CROP_WINDOW, DETECT_EVERY, DILATION, REGION, SMOOTHING, \
    box_in_frame, box_or_none, tip
from .mask import CATEGORY, SAM2_TYPE
from ..pipeline.mask.composite import mask_size_note
from ..pipeline.mask.crop import plan_crop
from ..pipeline.mask.face_box import boxes_from_mask, key_frames, track_face_boxes
from ..pipeline.mask.face_stream import FACE_PLAN_TYPE, FacePlan
from ..pipeline.video.reader import VideoFile


def open_video(video, name: str) -> VideoFile:
    """The file behind a core VIDEO, for reading frame by frame."""
    kind, value = host.video_source(video, name)
    if kind != "file":
        raise ValueError(f"{name}: this VIDEO holds frames in memory (e.g. from Create Video), not a file; connect "
                         f"a core Load Video, or for a short clip use Face Mask -> Face Crop -> sampler -> Face Paste "
                         f"on IMAGE frames.")
    return VideoFile(*value)


def face_boxes(video: VideoFile, mask, box: str, detect_every: int, unique_id=None) -> tuple[torch.Tensor, str]:
    """[T,4] face boxes of every frame of ``video`` and where they came from: a MASK, a typed box, or OpenCV
    detection on every ``detect_every``-th frame (decoded one at a time)."""
    count, h, w = video.num_frames, video.height, video.width
    if mask is not None:
        return boxes_from_mask(mask, count, h, w), "the connected mask"
    typed = box_or_none(box)
    if typed is not None:
        boxes = torch.tensor(box_in_frame(typed, h, w), dtype=torch.float32)[None].expand(count, 4).clone()
        return boxes, "the typed box"
    keys = len(key_frames(count, detect_every))
    bar = host.Progress(keys, unique_id)

    def step(n):
        host.throw_if_interrupted()
        bar.update(n)
    boxes = track_face_boxes(count, video.image, detect_every, progress=step)
    return boxes, f"OpenCV face detection on {keys} key frames"


class InfiniteTalkFacePlan:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "video": ("VIDEO", {"tooltip": "The video to dub (core Load Video); connect the same one to the "
                                               "sampler's source_video. Read frame by frame: any length."}),
                "width": tip(CROP_SIDE, "Width of the face crop the sampler generates (multiple of 16)."),
                "height": tip(CROP_SIDE, "Height of the face crop the sampler generates (multiple of 16)."),
                "padding": tip(CROP_PADDING, "Margin around the face on each side, as a fraction of the face size "
                                             "(context for the model: hair, neck)."),
                "window": tip(CROP_WINDOW, "0 = one fixed crop for the whole video (steadiest). N = a new crop "
                                           "rectangle every N frames (follows a moving head)."),
                "region": REGION,
                "detect_every": DETECT_EVERY,
                "dilation": tip(DILATION, "Grow (positive) or shrink (negative) the paste mask by this many pixels."),
                "smoothing": tip(SMOOTHING, "Average the paste mask over this many neighbouring frames (1 = off)."),
                **BLEND,
            },
            "optional": {
                "sam2": (SAM2_TYPE, {"tooltip": "Optional SAM2 model (InfiniteTalk SAM2 Loader): the paste mask follows "
                         "the face's real outline, segmented window by window from the tracked box. Without it: an "
                         "ellipse around the face box."}),
                "mask": ("MASK", {"tooltip": "Optional mask over the face (e.g. painted on the first frame); its "
                         "bounding box is the face box: one mask = every frame, a batch = per frame."}),
                "box": BOX,
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = (FACE_PLAN_TYPE,)
    RETURN_NAMES = ("face_plan",)
    FUNCTION = "run"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Face-only dubbing of a whole video at flat memory: tracks the face (boxes only, no frames "
                   "held) and plans the crop and the paste. Connect face_plan and the same video (source_video) "
                   "to the InfiniteTalk Sampler: it generates the face crop window by window and pastes it into "
                   "the full-resolution video; pixels outside the feathered mask are exactly the source.")

    def run(self, video, width, height, padding, window, region, detect_every, dilation, smoothing, feather,
            colour_match, erode, sam2=None, mask=None, box="", unique_id=None):
        source = open_video(video, "video")
        try:
            h, w, count = source.height, source.width, source.num_frames
            boxes, found = face_boxes(source, mask, box, detect_every, unique_id)
        finally:
            source.close()
        crop = plan_crop(boxes, h, w, width, height, padding=padding, window=window, region=region)
        plan = FacePlan(crop, region=region, dilation=dilation, smoothing=smoothing, feather=feather,
                        colour_match=colour_match, erode=erode, sam2=sam2)
        x0, y0, x1, y1 = crop.rects[0].tolist()
        note = None if mask is None else mask_size_note(mask, h, w)
        report = "\n".join(([note] if note else []) + [
            f"{count} frames of {w}x{h}: face from {found}; crop {x1 - x0}x{y1 - y0} at ({x0},{y0}) "
            f"{'for the whole video' if window <= 0 else f'(a new rectangle every {window} frames)'} -> "
            f"{width}x{height}; paste: {region} "
            f"{'ellipse' if sam2 is None else f'outline (SAM2 {sam2.name}, per window)'} (dilation {dilation}, "
            f"smoothing {smoothing}), feather "
            f"{feather}, colour match {colour_match}."])
        host.show_text(unique_id, report)
        return {"ui": {"text": [report]}, "result": (plan,)}


NODE_CLASS_MAPPINGS = {"InfiniteTalkFacePlan": InfiniteTalkFacePlan}
NODE_DISPLAY_NAME_MAPPINGS = {"InfiniteTalkFacePlan": "InfiniteTalk Face Plan (video)"}
