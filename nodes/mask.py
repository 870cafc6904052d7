"""Face-only dubbing nodes: SAM2 loader, face mask, face crop -> paste, and the compositor.

InfiniteTalk re-renders the whole frame; these nodes keep everything but the face (or mouth)
exactly as in the source video.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import host
from .face_inputs import BLEND, BOX, CROP_PADDING, CROP_SIDE, CROP_WINDOW, DETECT_EVERY, DILATION, REGION, SMOOTHING, \
    box_in_frame, box_or_none, tip
from .managed_model import ManagedOutput, PackPatcher, ensure_loaded
from ..pipeline.mask.composite import composite, mask_size_note, resize_masks
from ..pipeline.mask.crop import CROP_INFO_TYPE, crop_frames, paste_frames, plan_crop
from ..pipeline.mask.face_box import boxes_from_mask, parse_points, track_faces
from ..pipeline.mask.face_mask import CHUNK, face_masks
from ..pipeline.mask.regions import ellipse_masks
from ..pipeline.mask.sam2_model import Sam2Model, load_sam2

SAM2_TYPE = "INFINITETALK_SAM2"
CATEGORY = "InfiniteTalk/mask"
_NO_SAM2_FILE = "put sam2.1_hiera_*.safetensors or .pt in models/sam2"
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

def _note_mask_size(unique_id, mask, frames, name: str = "mask") -> str | None:
    """Say on the node when a MASK is not the frames' size (it is resized, maybe stretched)."""
    note = None if mask is None else mask_size_note(mask, int(frames.shape[1]), int(frames.shape[2]), name)
    if note:
        host.show_text(unique_id, note)
    return note


def _paste_progress(unique_id, images, source_images, mask):
    """Start a paste of ``images`` into ``source_images``: say on the node when ``mask`` is not the source's size,
    and give the progress callback over the frames pasted (as many as both videos have)."""
    _note_mask_size(unique_id, mask, source_images)
    return host.Progress(min(images.shape[0], source_images.shape[0]), unique_id).update


@dataclass
class ManagedSam2(Sam2Model, ManagedOutput):
    """What INFINITETALK_SAM2 carries: the SAM2 model and its memory-manager patcher."""

    patcher: PackPatcher | None = None


class InfiniteTalkSAM2Loader:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (host.model_files("sam2") or [_NO_SAM2_FILE], {"tooltip":
                           "A SAM2 / SAM2.1 checkpoint in models/sam2: Meta's sam2.1_hiera_{tiny,small,base_plus,"
                           "large}.pt or Kijai's sam2.1_hiera_*.safetensors (fp32 or fp16). The size is read "
                           "from the file. Needs transformers>=4.56."}),
            "precision": (["auto", "fp32", "bf16", "fp16"], {"default": "auto", "tooltip":
                          "Compute precision. 'auto' = bf16 on a GPU, fp32 on the CPU."}),
        }}

    RETURN_TYPES = (SAM2_TYPE,)
    RETURN_NAMES = ("sam2",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = "Loads a SAM2 video segmentation model for InfiniteTalk Face Mask."

    def load(self, model_name, precision):
        path = host.model_path("sam2", model_name)
        if precision == "auto":
            precision = "fp32" if host.torch_device().type == "cpu" else "bf16"
        offload = host.offload_device()
        sam = load_sam2(path, dtype=_DTYPES[precision], device=offload)
        patcher = PackPatcher(sam.model, load_device=host.torch_device(), offload_device=offload)
        return (ManagedSam2(sam.model, sam.name, sam.dtype, patcher),)


class InfiniteTalkFaceMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The source video frames (or one image)."}),
                "region": REGION,
                "dilation": tip(DILATION, "Grow (positive) or shrink (negative) the mask by this many pixels."),
                "smoothing": tip(SMOOTHING, "Average the mask over this many neighbouring frames so it does not "
                                            "flicker (1 = off)."),
                "detect_every": DETECT_EVERY,
            },
            "optional": {
                "sam2": (SAM2_TYPE, {"tooltip": "Optional SAM2 model (InfiniteTalk SAM2 Loader): the mask follows "
                         "the real outline of the face. Without it the mask is an ellipse around the face box."}),
                "mask": ("MASK", {"tooltip": "Optional mask over the face (e.g. painted in Load Image's mask "
                         "editor). Its bounding box is the face box: one mask = first frame, a batch = per frame."}),
                "box": BOX,
                "points": ("STRING", {"default": "", "tooltip":
                           "Optional extra SAM2 clicks on the first frame, 'x,y; x,y' in pixels; prefix '-' for a "
                           "point that is NOT face (e.g. '-240,400' on a microphone)."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    FUNCTION = "run"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Face (or lower-face / mouth) mask for every frame: SAM2 when connected, else an ellipse "
                   "around the face box from a mask, a typed box or automatic detection.")

    def run(self, images, region, dilation, smoothing, detect_every, sam2=None, mask=None, box="", points="",
            unique_id=None):
        patcher = getattr(sam2, "patcher", None)
        if patcher is not None:
            ensure_loaded(patcher)  # ComfyUI keeps it there until another model needs the room
        device = "cpu" if sam2 is None else next(sam2.model.parameters()).device
        masks, _, report = face_masks(
            images, sam=sam2, user_mask=mask, box=box_or_none(box), points=parse_points(points),
            region=region, dilation=dilation, smoothing=smoothing, detect_every=detect_every,
            device=device, progress_factory=lambda total: host.Progress(total, unique_id).update)
        note = None if mask is None else mask_size_note(mask, int(images.shape[1]), int(images.shape[2]))
        report = report if note is None else f"{note}\n{report}"
        host.show_text(unique_id, report)
        return {"ui": {"text": [report]}, "result": (masks,)}


class InfiniteTalkFaceCrop:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The source video frames."}),
                "width": tip(CROP_SIDE, "Width of the crop frames handed to the sampler (multiple of 16)."),
                "height": tip(CROP_SIDE, "Height of the crop frames handed to the sampler (multiple of 16)."),
                "padding": tip(CROP_PADDING, "Margin around the face on each side, as a fraction of the face size. "
                                             "The model needs some context (hair, neck) to render a natural face."),
                "window": tip(CROP_WINDOW, "0 = one fixed crop for the whole clip (steadiest). N = a new crop "
                                           "rectangle every N frames (follows a moving head; set it to the "
                                           "sampler's window length)."),
                "region": REGION,
                "detect_every": DETECT_EVERY,
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Optional face mask (e.g. from InfiniteTalk Face Mask); the crop "
                         "follows its extent. Without it the face is found from the box or automatically."}),
                "box": BOX,
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("IMAGE", CROP_INFO_TYPE, "MASK")
    RETURN_NAMES = ("crop_images", "crop_info", "crop_mask")
    FUNCTION = "run"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Crops a steady face region for generation at a small size; InfiniteTalk Face Paste puts the "
                   "result back into the full-resolution video.")

    def run(self, images, width, height, padding, window, region, detect_every, mask=None, box="", unique_id=None):
        count, h, w = images.shape[:3]
        _note_mask_size(unique_id, mask, images)
        typed = box_or_none(box)
        if mask is not None:
            boxes, paste_region = boxes_from_mask(mask, count, h, w), "box"
        elif typed is not None:
            boxes, paste_region = torch.tensor(box_in_frame(typed, h, w))[None].expand(count, 4).clone(), region
        else:
            boxes, paste_region = track_faces(images, detect_every=detect_every,
                                              progress=lambda n: host.throw_if_interrupted()), region
        info = plan_crop(boxes, h, w, width, height, padding=padding, window=window, region=paste_region)
        crops = crop_frames(images, info)
        crop_mask = torch.empty(count, height, width)
        for s in range(0, count, CHUNK):  # a few frames at a time: no full-resolution copy of a long clip
            host.throw_if_interrupted()
            stop = min(s + CHUNK, count)
            if mask is None:
                part = ellipse_masks(boxes[s:stop], h, w, region)
            else:  # one mask (or a short batch): hold the last one
                part = mask[[min(t, mask.shape[0] - 1) for t in range(s, stop)]]
            crop_mask[s:stop] = crop_frames(resize_masks(part, h, w)[..., None], info.frames(s, stop))[..., 0]
        return crops, info, crop_mask


class InfiniteTalkFacePaste:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The generated crop frames (any size; resized back)."}),
                "crop_info": (CROP_INFO_TYPE, {"tooltip": "crop_info from InfiniteTalk Face Crop."}),
                "source_images": ("IMAGE", {"tooltip": "The full-resolution source video given to Face Crop."}),
                **BLEND,
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Optional full-frame mask of what to replace (e.g. from InfiniteTalk "
                         "Face Mask). Without it: an ellipse of the crop's region around the face."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "run"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Pastes generated face crops back into the source video through a feathered, colour-matched "
                   "mask. Pixels outside the mask are exactly the source.")

    def run(self, images, crop_info, source_images, feather, colour_match, erode, mask=None, unique_id=None):
        progress = _paste_progress(unique_id, images, source_images, mask)
        out = paste_frames(images, source_images, crop_info, masks=mask, feather_radius=feather,
                           colour_match=colour_match, erode=erode, progress=progress)
        return (out,)


class InfiniteTalkComposite:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The generated full-frame video (resized to the source if needed)."}),
                "source_images": ("IMAGE", {"tooltip": "The source video whose pixels are kept outside the mask."}),
                "mask": ("MASK", {"tooltip": "Where to take the generated pixels (e.g. from InfiniteTalk Face "
                         "Mask); one mask is used for every frame."}),
                **BLEND,
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "run"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Keeps the source video everywhere except inside the mask, where the generated video is "
                   "blended in (feathered, colour-matched). Fixes background/clothing drift of full-frame V2V.")

    def run(self, images, source_images, mask, feather, colour_match, erode, unique_id=None):
        progress = _paste_progress(unique_id, images, source_images, mask)
        return (composite(images, source_images, mask, feather, colour_match, erode, progress=progress),)


NODE_CLASS_MAPPINGS = {
    "InfiniteTalkSAM2Loader": InfiniteTalkSAM2Loader,
    "InfiniteTalkFaceMask": InfiniteTalkFaceMask,
    "InfiniteTalkFaceCrop": InfiniteTalkFaceCrop,
    "InfiniteTalkFacePaste": InfiniteTalkFacePaste,
    "InfiniteTalkComposite": InfiniteTalkComposite,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InfiniteTalkSAM2Loader": "InfiniteTalk SAM2 Loader",
    "InfiniteTalkFaceMask": "InfiniteTalk Face Mask",
    "InfiniteTalkFaceCrop": "InfiniteTalk Face Crop",
    "InfiniteTalkFacePaste": "InfiniteTalk Face Paste",
    "InfiniteTalkComposite": "InfiniteTalk Composite",
}
