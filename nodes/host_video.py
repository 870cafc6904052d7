"""The host adapter's VIDEO part: what a core VIDEO object asks for, read from the object, so the streamed reader
(``pipeline/video/reader.VideoFile``) gives exactly the frames the object's own ``get_components()`` would.

Core's VIDEO has grown per-object edits over releases, all applied inside ``get_components()``:
- 0.3.64 / 0.8.0: ``VideoFromFile(file)``: every frame, ``rgb24 / 255``, no rotation.
- later: a trim (``start_time``, negative = from the end; ``duration``, 0 = to the end: ``get_active_trim_window()``,
  or only the private fields in the first releases that had it), then a crop (``as_cropped``: one rectangle, even
  aligned, on the upright frame), display-matrix rotation, and float pixels (``frame_rules``); the newest keep a
  list of spatial ops (crops and scales) and say ``has_pending_frame_edits()``.
The trim, crops and rotation stream exactly. The pixel rule is learnt from the object's own class: it decodes a
tiny in-memory clip once, and the rule whose frame equals it bit for bit is used (``pixel_rule``). An edit that
cannot stream (a scale, an edit this pack does not know, several concatenated videos) is applied by core itself:
the video is decoded whole through ``get_components()`` when that fits in half the free RAM, and refused with a
message otherwise.
"""
from __future__ import annotations

import io
import logging

import numpy as np
import torch

from ..pipeline.video.frame_rules import CROP_KINDS, PIXEL_RULES
from ..pipeline.video.reader import VideoFile

log = logging.getLogger("infinitetalk_lipsync")

_SPATIAL = set(CROP_KINDS) | {"scale"}
_rules: dict[type, str] = {}


def _private(video, field: str):
    """The value of a name-mangled private field (``_VideoFromFile__crop``) of any class in ``video``'s MRO."""
    for cls in type(video).__mro__:
        name = f"_{cls.__name__.lstrip('_')}__{field}"
        if name in getattr(video, "__dict__", {}):
            return video.__dict__[name]
    return None


def _spatial_ops(video) -> list[tuple]:
    """Crop/scale ops stored on the object, in order: the one crop of ``as_cropped`` or an op list."""
    ops = []
    crop = _private(video, "crop")
    if crop is not None:
        ops.append(("crop_aligned", *crop))
    for value in getattr(video, "__dict__", {}).values():
        if (isinstance(value, (list, tuple)) and value and all(isinstance(op, tuple) and op and op[0] in _SPATIAL
                                                                  for op in value)):
            ops.extend(value)
    return ops


def _trim(video, source) -> tuple[float | None, float]:
    """(start s, duration s); start None for a VIDEO without a trim (it keeps frames before timestamp 0 too)."""
    if hasattr(video, "get_active_trim_window"):
        start, duration = video.get_active_trim_window()
        return float(start), float(duration)
    if _private(video, "start_time") is None:
        return None, 0.0
    start, duration = float(_private(video, "start_time") or 0.0), float(_private(video, "duration") or 0.0)
    if start < 0:  # seconds from the end, as those releases counted it
        import av
        if hasattr(source, "seek"):
            source.seek(0)
        with av.open(source) as container:
            start = max(float(container.duration or 0) / av.time_base + start, 0.0)
        if hasattr(source, "seek"):
            source.seek(0)
    return start, duration


def _own_stream_source(video) -> bool:
    """Whether the object's class reads its stream from a file (not the base class's encode-to-memory default)."""
    for cls in type(video).__mro__:
        if "get_stream_source" in cls.__dict__:
            return cls.__name__ != "VideoInput"
    return False


def _probe_clip() -> bytes:
    """A 2-frame 40x24 yuv420p clip whose pixels the pixel rules convert differently (width not a multiple of 32)."""
    import av
    rng = np.random.default_rng(7)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 40, 24, "yuv420p"
        for _ in range(2):
            img = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def pixel_rule(video) -> str:
    """The pixel rule (``frame_rules.PIXEL_RULES``) of ``video``'s class: the one whose frame equals what that class's
    ``get_components()`` gives for a probe clip; once per class."""
    cls = type(video)
    if cls not in _rules:
        clip = _probe_clip()
        try:
            core = cls(io.BytesIO(clip)).get_components().images[0]
        except Exception as e:  # a class that cannot be built from a file: the current core behaviour
            log.warning("VIDEO %s: could not learn its pixel conversion (%s); using 'float'.", cls.__name__, e)
            _rules[cls] = "float"
            return _rules[cls]
        errors = {}
        for rule in PIXEL_RULES:
            video_file = VideoFile(io.BytesIO(clip), pixels=rule)
            try:
                ours = video_file.image(0)
            finally:
                video_file.close()
            errors[rule] = float((ours - core).abs().max()) if ours.shape == core.shape else float("inf")
        _rules[cls] = min(errors, key=errors.get)
        if errors[_rules[cls]] > 0:
            log.warning("VIDEO %s: no pixel rule matches its get_components() exactly (%s); using '%s'.",
                        cls.__name__, errors, _rules[cls])
    return _rules[cls]


def _materialize(video, name: str, why: str):
    """('frames', (IMAGE, fps)) from core's own ``get_components()``, refused where it would not fit in RAM."""
    from .host import available_ram
    try:
        width, height = video.get_dimensions()
        need = int(video.get_frame_count()) * int(width) * int(height) * 3 * 4
    except Exception:  # an object without these: its size is known only after decoding
        need = 0
    free = available_ram()
    if free is not None and need > free // 2:
        raise ValueError(f"{name}: {why}, so it cannot be streamed, and decoding it whole needs "
                         f"{need / 2**30:.1f} GiB of RAM ({free / 2**30:.1f} GiB free). Remove that edit and connect "
                         f"the Load Video output directly (trim and crop on Load Video stream; the sampler's "
                         f"width/height resize the frames), or trim the video shorter.")
    log.info("%s: %s; decoding it whole (%.2f GiB).", name, why, need / 2**30)
    components = video.get_components()
    return "frames", (components.images, float(components.frame_rate))


def video_source(video, name: str):
    """('file', (path or binary file object, trim start s, trim duration s, crop ops, pixel rule)): the arguments
    of ``VideoFile``; or ('frames', (IMAGE [N,H,W,3], fps)) for a VIDEO held in memory (core ``CreateVideo``) or
    one whose edits cannot stream (see the module docstring)."""
    if not hasattr(video, "get_components"):
        raise ValueError(f"{name}: expected a VIDEO (e.g. from the core Load Video node).")
    children = getattr(video, "videos", None)
    if isinstance(children, list):  # newer core VideoFromList (Concatenate Video, Create Video with a codec)
        if len(children) == 1 and getattr(video, "complete_audio", None) is None:
            return video_source(children[0], name)
        return _materialize(video, name, f"it joins {len(children)} videos")
    if not _own_stream_source(video):  # frames in memory (VideoFromComponents) or an unknown kind of VIDEO
        components = video.get_components()
        return "frames", (components.images, float(components.frame_rate))
    ops = _spatial_ops(video)
    if any(op[0] not in CROP_KINDS for op in ops):
        return _materialize(video, name, "it is resized (a Resize Video edit)")
    pending = getattr(video, "has_pending_frame_edits", None)
    if pending is not None and pending() and not ops:
        return _materialize(video, name, "it carries a frame edit this pack does not know")
    try:
        source = video.get_stream_source()
    except (AttributeError, ValueError, OSError, NotImplementedError):
        return _materialize(video, name, "it has no file to read")
    start, duration = _trim(video, source)
    return "file", (source, start, duration, tuple(tuple(op) for op in ops), pixel_rule(video))
