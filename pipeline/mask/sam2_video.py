"""Segment one face through a video with SAM2, streaming frames from memory.

The face box (and optional points) prompt the first frame; every later frame is pushed through
the model's memory (streaming mode), so frames never go to disk and memory stays flat: only the
frames the model's memory still reads (the prompted frame plus the last 16) are kept.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .sam2_model import Sam2Model

_MEAN = torch.tensor([0.485, 0.456, 0.406])
_STD = torch.tensor([0.229, 0.224, 0.225])
_OBJECT = 1


def preprocess(frame: torch.Tensor, size: int, device, dtype) -> torch.Tensor:
    """IMAGE frame [H,W,C] 0..1 -> SAM2 input [1,3,size,size] (squashed to a square, ImageNet-normalised)."""
    x = frame[..., :3].to(device=device, dtype=torch.float32).movedim(-1, 0)[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = (x - _MEAN.to(device)[:, None, None]) / _STD.to(device)[:, None, None]
    return x.to(dtype)


def _prompt(box: torch.Tensor, points: list[tuple[float, float, int]], height: int, width: int, size: int, device):
    """Box corners (labels 2, 3) then points (1 = face, 0 = not face), scaled to the model's input size."""
    coords = [[float(box[0]), float(box[1])], [float(box[2]), float(box[3])]] + [[x, y] for x, y, _ in points]
    labels = [2, 3] + [int(lab) for _, _, lab in points]
    c = torch.tensor(coords, dtype=torch.float32, device=device)
    c = c * torch.tensor([size / width, size / height], device=device)
    return {"point_coords": c[None, None], "point_labels": torch.tensor([[labels]], dtype=torch.int32, device=device)}


def _forget_old(session, frame_idx: int, keep: int) -> None:
    """Drop per-frame state the model will not read again (older than ``keep`` frames)."""
    for outputs in session.output_dict_per_obj.values():
        stale = [t for t in outputs["non_cond_frame_outputs"] if t < frame_idx - keep]
        for t in stale:
            del outputs["non_cond_frame_outputs"][t]
    prompted = {t for outputs in session.output_dict_per_obj.values() for t in outputs["cond_frame_outputs"]}
    for t in [t for t in session.processed_frames if t < frame_idx and t not in prompted]:
        del session.processed_frames[t]


@torch.no_grad()
def track_logits(sam: Sam2Model, frames: torch.Tensor, box: torch.Tensor,
                 points: list[tuple[float, float, int]] = (), device: torch.device | str = "cpu"):
    """Track the object inside ``box`` (frame 0) through ``frames``, one frame at a time.

    frames: IMAGE [T,H,W,C] 0..1 (any device); box: [4] (x0,y0,x1,y1) pixels of frame 0;
    points: extra (x, y, label) clicks on frame 0. Yields (logits [H,W] float32 on ``device``,
    present: bool — False where SAM2 says the object is not visible) per frame."""
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    model, size = sam.model, sam.image_size
    count, height, width = frames.shape[:3]
    session = Sam2VideoInferenceSession(video_height=height, video_width=width, inference_device=device,
                                        inference_state_device=device, video_storage_device=device,
                                        dtype=sam.dtype)
    keep = max(int(model.config.num_maskmem), int(model.config.max_object_pointers_in_encoder)) + 1
    for t in range(count):
        pixels = preprocess(frames[t], size, device, sam.dtype)
        if t == 0:
            session.add_new_frame(pixels, frame_idx=0)
            obj = session.obj_id_to_idx(_OBJECT)
            session.add_point_inputs(obj, 0, _prompt(box, list(points), height, width, size, device))
            session.obj_with_new_inputs = [_OBJECT]
            out = model(session, frame_idx=0)
        else:
            out = model(session, frame_idx=t, frame=pixels)
            _forget_old(session, t, keep)
        logits = F.interpolate(out.pred_masks[:1].float(), size=(height, width), mode="bilinear", align_corners=False)
        yield logits[0, 0], bool(out.object_score_logits.float().flatten()[0] > 0)


def segment_face(sam: Sam2Model, frames: torch.Tensor, box: torch.Tensor,
                 points: list[tuple[float, float, int]] = (), device: torch.device | str = "cpu",
                 progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary face masks from ``track_logits`` (logit > 0). Returns (masks [T,H,W] float32 {0,1} on
    the CPU, present [T] bool). ``progress(n)`` is called once per frame."""
    count, height, width = frames.shape[:3]
    masks = torch.zeros(count, height, width)
    present = torch.zeros(count, dtype=torch.bool)
    for t, (logits, visible) in enumerate(track_logits(sam, frames, box, points, device)):
        masks[t] = (logits > 0).float().cpu()
        present[t] = visible
        if progress is not None:
            progress(1)
    return masks, present
