"""Per-frame face boxes for a video: from a user MASK or box when given, else OpenCV's Haar cascade.

Boxes are float tensors ``[T, 4]`` = (x0, y0, x1, y1) in pixels of the video frame (x1/y1
exclusive). The automatic detector runs on key frames only, keeps following the face it
picked first (largest face, then best overlap), interpolates between key frames and is
smoothed over time, so a box never jumps from one frame to the next.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

OPENCV_HINT = 'pip install "opencv-python-headless<5"'
# OpenCV 5 dropped CascadeClassifier and its XML files; 4.x ships them inside the wheel.
CASCADE_FILE = "haarcascade_frontalface_alt2.xml"


class NoFaceFoundError(ValueError):
    """No face was found anywhere in the video."""

    __module__ = "infinitetalk"  # ComfyUI shows "infinitetalk.NoFaceFoundError", not the install path


class OpenCVMissingError(ImportError):
    """OpenCV 4.x (with its Haar cascades) is not installed."""

    __module__ = "infinitetalk"  # ComfyUI shows "infinitetalk.OpenCVMissingError", not the install path


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """``"x0,y0,x1,y1"`` (pixels) -> tuple; empty text -> None. Raises ValueError on bad text."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        values = [float(v) for v in text.replace(";", ",").split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[2] <= values[0] \
            or values[3] <= values[1]:
        raise ValueError(f"box '{text}' must be 'x0,y0,x1,y1' in pixels (finite numbers) with x1 > x0 and y1 > y0, "
                         f"e.g. '120,60,360,330' (leave it empty to detect the face automatically).")
    return tuple(values)


def check_box_in_frame(box: tuple[float, float, float, float], height: int, width: int) -> None:
    """Refuse a face box that does not overlap the ``width`` x ``height`` frame (it would give an
    all-zero mask and a paste that changes nothing)."""
    x0, y0, x1, y1 = box
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise ValueError(f"box '{x0:g},{y0:g},{x1:g},{y1:g}' lies entirely outside the {width}x{height} frame: "
                         f"give x0,y0,x1,y1 in pixels of the first frame (x 0..{width}, y 0..{height}), e.g. the "
                         f"face's corners read off the image, or leave it empty to detect the face automatically.")


def parse_points(text: str) -> list[tuple[float, float, int]]:
    """``"x,y; x,y; -x,y"`` -> [(x, y, label)]: label 1 keeps the point in the mask, a leading '-'
    (label 0) keeps it out. Empty text -> []."""
    points = []
    for item in (text or "").split(";"):
        item = item.strip()
        if not item:
            continue
        label = 0 if item.startswith("-") else 1
        try:
            x, y = (float(v) for v in item.lstrip("+-").split(","))
        except ValueError:
            raise ValueError(f"point '{item}' must be 'x,y' in pixels (prefix '-' for a point outside the face), "
                             f"points separated by ';', e.g. '240,200; -20,20'.") from None
        points.append((x, y, label))
    return points


def boxes_from_mask(mask: torch.Tensor, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Bounding boxes of a user MASK.

    mask: [B,h,w] or [h,w] float 0..1 (>0.5 is inside); its size may differ from the video
    (boxes are rescaled). B == 1 gives the same box for every frame; empty frames take the box
    of the nearest non-empty frame. Returns [num_frames, 4] float32.
    """
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() != 3:
        raise ValueError(f"mask must be a MASK [B,H,W]; got shape {tuple(mask.shape)}.")
    inside = mask > 0.5
    rows, cols = inside.any(dim=2), inside.any(dim=1)
    present = rows.any(dim=1)
    if not bool(present.any()):
        raise NoFaceFoundError("The face mask is empty (no pixel above 0.5). Paint the face in the mask editor, "
                               "or disconnect the mask to detect the face automatically.")
    sy, sx = height / mask.shape[1], width / mask.shape[2]
    boxes = torch.zeros(mask.shape[0], 4)
    for i in torch.nonzero(present).flatten().tolist():
        ys, xs = torch.nonzero(rows[i]).flatten(), torch.nonzero(cols[i]).flatten()
        boxes[i] = torch.tensor([xs[0] * sx, ys[0] * sy, (xs[-1] + 1) * sx, (ys[-1] + 1) * sy])
    boxes = hold_nearest(boxes, present)
    if boxes.shape[0] == 1:
        return boxes.expand(num_frames, 4).clone()
    if boxes.shape[0] < num_frames:  # shorter mask batch: hold its last box
        boxes = torch.cat([boxes, boxes[-1:].expand(num_frames - boxes.shape[0], 4)])
    return boxes[:num_frames].clone()


def hold_nearest(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """values [T,...], present [T] bool (at least one True): every frame takes the row of the nearest
    present frame (the earlier one on ties); present frames keep their own."""
    idx = torch.nonzero(present).flatten()
    nearest = (torch.arange(len(values))[:, None] - idx[None]).abs().argmin(dim=1)
    return values[idx[nearest]]


def _cv2():
    try:
        import cv2
    except ImportError:
        raise OpenCVMissingError(f"Automatic face detection needs OpenCV 4.x: {OPENCV_HINT} "
                                 f"(or connect a face MASK / type a box instead).") from None
    data = getattr(cv2, "data", None)
    if not hasattr(cv2, "CascadeClassifier") or data is None:
        raise OpenCVMissingError(f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 removed them): "
                                 f"{OPENCV_HINT} (or connect a face MASK / type a box instead).")
    return cv2


def _detector():
    cv2 = _cv2()
    detector = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE_FILE)
    if detector.empty():
        raise OpenCVMissingError(f"OpenCV could not load {CASCADE_FILE} from {cv2.data.haarcascades}; "
                                 f"reinstall it: {OPENCV_HINT}.")
    return cv2, detector


def detect_faces(frame: torch.Tensor) -> torch.Tensor:
    """All frontal faces in one frame. frame: [H,W,3] float 0..1 -> [N,4] float32 boxes.

    Faces smaller than 1/12 of the short side are ignored (background clutter); detection runs on a
    copy scaled to a 640-pixel long side, which keeps it near 50 ms a frame."""
    cv2, detector = _detector()
    height, width = frame.shape[:2]
    scale = min(1.0, 640.0 / max(height, width))
    gray = (frame[..., :3].float().mean(dim=-1) * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    if scale < 1.0:
        gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_side = max(24, min(gray.shape) // 12)
    found = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    if len(found) == 0:
        return torch.zeros(0, 4)
    xywh = torch.as_tensor(found, dtype=torch.float32) / scale
    return torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU between box sets a [N,4] and b [M,4] -> [N,M]."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(dim=-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(dim=-1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-6)


def key_frames(num_frames: int, detect_every: int) -> list[int]:
    """The frames the detector runs on, in order: every ``detect_every``-th frame and the last."""
    return sorted(set(range(0, num_frames, max(1, detect_every))) | {num_frames - 1})


def track_faces(frames: torch.Tensor, detect_every: int = 5, smooth: int = 9, progress=None) -> torch.Tensor:
    """``track_face_boxes`` over an IMAGE [T,H,W,C] float 0..1 held in memory. Returns [T,4] float32."""
    return track_face_boxes(frames.shape[0], lambda t: frames[t], detect_every, smooth, progress)


def track_face_boxes(num_frames: int, frame_at: Callable[[int], torch.Tensor], detect_every: int = 5,
                     smooth: int = 9, progress=None) -> torch.Tensor:
    """Follow one face through a video of ``num_frames`` frames with the Haar detector, holding no frames:
    ``frame_at(t)`` gives frame t ([H,W,C] float 0..1) when asked (an IMAGE row, or a frame decoded from a file).

    The detector runs on every ``detect_every``-th frame (and the last), in order; the first key frame with a
    face picks the largest one, later key frames take the detection overlapping the previous box most (a key
    frame with no overlapping face keeps the previous box). Boxes are linearly interpolated between key
    frames, then averaged over ``smooth`` frames. ``progress(n)`` is called once per key frame.
    Returns [T,4] float32. Raises NoFaceFoundError when no key frame has a face.
    """
    keys = key_frames(num_frames, detect_every)
    found, previous = {}, None
    for t in keys:
        faces = detect_faces(frame_at(t))
        if progress is not None:
            progress(1)
        if len(faces) == 0:
            continue
        if previous is None:
            pick = (faces[:, 2:] - faces[:, :2]).prod(dim=-1).argmax()
        else:
            overlap = box_iou(previous[None], faces)[0]
            if float(overlap.max()) <= 0.0:
                continue
            pick = overlap.argmax()
        previous = found[t] = faces[pick]
    if not found:
        raise NoFaceFoundError(
            f"No face was found in the video ({len(keys)} frames checked with OpenCV's frontal-face detector; it "
            f"needs a roughly frontal face at least 1/12 of the frame's short side). Connect a face MASK or type "
            f"a box 'x0,y0,x1,y1' instead.")
    times = torch.tensor(sorted(found), dtype=torch.float32)
    values = torch.stack([found[int(t)] for t in times])
    boxes = _interpolate(times, values, num_frames)
    return smooth_boxes(boxes, smooth)


def _interpolate(times: torch.Tensor, values: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Piecewise-linear [num_frames,4] through (times[k], values[k]); held constant past the ends."""
    t = torch.arange(num_frames, dtype=torch.float32)
    hi = torch.searchsorted(times, t).clamp(1, max(1, len(times) - 1))
    if len(times) == 1:
        return values.expand(num_frames, 4).clone()
    lo = hi - 1
    w = ((t - times[lo]) / (times[hi] - times[lo])).clamp(0, 1)[:, None]
    return values[lo] * (1 - w) + values[hi] * w


def smooth_boxes(boxes: torch.Tensor, window: int) -> torch.Tensor:
    """Centred moving average of [T,4] boxes over ``window`` frames (edges replicated)."""
    if window <= 1 or boxes.shape[0] <= 1:
        return boxes
    half = window // 2
    padded = torch.cat([boxes[:1].expand(half, 4), boxes, boxes[-1:].expand(half, 4)])
    return padded.unfold(0, 2 * half + 1, 1).mean(dim=-1)
