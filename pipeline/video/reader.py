"""The source video read from its file window by window (PyAV), never decoded whole.

``VideoSource`` has the interface of ``sampler.source.Source`` (``index``, ``frames_at``, ``num_frames``,
``is_image``, ``th``/``tw``, ``source_fps``/``fps``, ``end``), so the loop cannot tell them apart. Which
source frame an output frame shows is ``window_plan.source_frame_index`` (the one owner of that rule);
this module only fetches source frame ``i``: the last frame starting by ``t0 + (i + 1/2)/source_fps`` (``t0`` =
the first frame's timestamp, the first at or after the trim start; ``source_fps`` = the stream's average rate; the
half frame absorbs container timestamp rounding). For a constant-frame-rate video that is the i-th frame
core's ``get_components()`` gives for the same VIDEO (its trim, crop and pixel conversion: ``frame_rules``), so
the streamed and the IMAGE paths produce identical renders; for a variable frame rate it is the frame shown at
that time. Rotated phone clips (display matrix) come out upright, as current core gives them (0.3.64 and 0.8.0
gave them sideways: there the streamed frames are their upright turn).

Frames are decoded forward with one open decoder; a request behind the decoder seeks to the previous
keyframe. The last ``CACHE_FRAMES`` decoded frames stay cached (as decoded, converted when asked for: a
window's source frames overlap the previous window's by the motion frames), so memory is bounded by that cache
whatever the video's length.
"""
from __future__ import annotations

from collections import OrderedDict
from fractions import Fraction

import numpy as np
import torch

from ..resolution import resize_and_crop
from ..window_plan import SOURCE_END, source_frame_index
from .frame_rules import CROP_KINDS, Converter, apply_crops, rotation_turns, upright

# decoded frames kept: >= the largest motion-frame overlap (33) + 1.
CACHE_FRAMES = 34
# A frame whose timestamp is up to this fraction of a frame after the target time counts as on screen:
# containers round timestamps (Matroska to 1 ms), so frame i of a constant-rate video is near, not at, i/fps.
_TIME_TOLERANCE = 0.5


def _av():
    try:
        import av
    except ImportError:  # av ships with ComfyUI; outside it, requirements.txt installs it
        raise ImportError("Reading or writing video needs PyAV: pip install av") from None
    return av


class VideoFile:
    """Random access to the frames of one video file by index, decoding forward from the nearest keyframe.

    path: a file path or a readable binary file object (a ``VideoFromFile`` over BytesIO). start_s/duration_s: the
    trim of a newer core VIDEO, as its ``get_components`` applies it: frame 0 is the first frame whose timestamp
    is at or after ``start_s``; with ``duration_s`` > 0 the video ends before ``start_s + duration_s`` (None: a
    VIDEO without a trim, which keeps every frame). crops: crop
    ops on the upright frame (``frame_rules``); pixels: the host's pixel rule (``frame_rules.PIXEL_RULES``)."""

    def __init__(self, path, start_s: float | None = None, duration_s: float = 0.0, crops=(), pixels: str = "rgb24"):
        av = _av()
        self.path, self.start_s, self.duration_s = path, start_s, float(duration_s)
        self.crops = tuple(tuple(op) for op in crops)
        for op in self.crops:
            if len(op) != 5 or op[0] not in CROP_KINDS:
                raise ValueError(f"source_video: unknown crop {op!r}; expected (kind, x, y, width, height) with kind "
                                 f"in {CROP_KINDS}.")
        self._convert = Converter(pixels)
        self.pixels = pixels
        try:
            self._container = av.open(path)
        except Exception as e:  # av.error.* differ by version; the message says what is wrong with the file
            raise ValueError(f"source_video: cannot open {path!r} with PyAV ({e}).") from None
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"source_video: {path!r} has no video stream.")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        if not rate:
            raise ValueError(f"source_video: {path!r} has no frame rate; re-encode it with a fixed frame rate.")
        self.fps = Fraction(rate)
        tb = self._stream.time_base
        # the trim in stream timestamps as core computes it (absolute pts, truncated); a VIDEO with a trim feature
        # drops frames before pts 0 even when its start is 0 (start_s 0.0), one without (start_s None) does not
        self._start_pts = None if start_s is None else int(float(start_s) / tb)
        self._end_pts = int((float(start_s or 0.0) + self.duration_s) / tb) if self.duration_s else None
        self._cache: OrderedDict[int, object] = OrderedDict()
        self._prefetching = False
        self._decoder = None
        first = self._restart(float(self._start_pts * tb) if self._start_pts else 0.0)
        head_dropped = False
        while self._start_pts is not None and first[1].pts is not None and first[1].pts < self._start_pts:
            head_dropped = True
            first = next(self._decoder, None)
            if first is None:
                raise ValueError(f"source_video: the trim starts at {start_s:g} s, after the last frame of "
                                 f"{path!r}; set a smaller start time on Load Video.")
        self._t0 = first[0]
        self.height, self.width = self._shape(first[1])
        whole = not head_dropped and not self._start_pts and self._end_pts is None
        self.num_frames = self._count_frames(whole)
        self._pending = None  # counting moved the demuxer: the first lookup seeks

    # -- decoding -------------------------------------------------------------------------------------------------
    def _frames(self):
        """(time, decoded frame) in order; frames are converted to RGB only when asked for."""
        for frame in self._container.decode(self._stream):
            if frame.time is not None:
                yield float(frame.time), frame

    def _restart(self, time_s: float):
        """Seek to the keyframe at or before ``time_s`` (absolute) and return the first decoded (time, frame)."""
        origin = self._stream.start_time or 0
        offset = int(time_s / self._stream.time_base)
        self._container.seek(max(offset, origin), stream=self._stream, backward=True, any_frame=False)
        self._decoder = self._frames()
        try:
            return next(self._decoder)
        except StopIteration:
            raise ValueError(f"source_video: {self.path!r} has no decodable video frame.") from None

    def _count_frames(self, whole: bool) -> int:
        """Frames ``get_components`` would give: the container's count when the trim keeps the ``whole`` stream,
        else the video packets (demuxed, not decoded) with a timestamp inside the trim."""
        if self._stream.frames and whole:
            return int(self._stream.frames)
        start, end = self._start_pts or -(1 << 62), self._end_pts
        if self._start_pts:
            self._container.seek(self._start_pts, stream=self._stream, backward=True, any_frame=False)
        else:
            self._container.seek(self._stream.start_time or 0, stream=self._stream, backward=True)
        count = 0
        for packet in self._container.demux(self._stream):
            if packet.size == 0:
                continue
            if end is not None and packet.dts is not None and packet.dts >= end:
                break  # presentation never precedes decoding: nothing later is inside the trim
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None or (pts >= start and (end is None or pts < end)):
                count += 1
        if not count:
            where = f"{self.start_s or 0:g} s" + (f" + {self.duration_s:g} s" if self.duration_s else "")
            raise ValueError(f"source_video: no frame of {self.path!r} lies in its trim ({where}); set a start time "
                             f"inside the video on Load Video.")
        return count

    def _time(self, index: int) -> float:
        return self._t0 + index / float(self.fps)

    def _decoded(self, index: int):
        """The decoded frame (``av.VideoFrame``) of source frame ``index`` (clamped to the last frame)."""
        index = min(max(0, index), self.num_frames - 1)
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        target = self._time(index)
        tol = _TIME_TOLERANCE / float(self.fps)
        if self._pending is not None and self._pending[0] > target + tol and index > 0 and not self._prefetching:
            # Reading backwards (ping-pong past the end): decode the frames before this one too, in order and
            # through this same rule, so the next backward reads hit the cache instead of each seeking to a
            # keyframe (854x480, 72 frames backwards: 1.55 s without this).
            self._prefetching = True
            try:
                for k in range(max(0, index - CACHE_FRAMES + 2), index):
                    self._decoded(k)
            finally:
                self._prefetching = False
            return self._decoded(index)
        if self._pending is None or self._pending[0] > target + tol or target - self._pending[0] > 4.0:
            # behind the decoder (or far ahead): seek instead of decoding every frame in between
            self._pending = self._restart(max(self._t0, target))
        current = self._pending
        for item in self._decoder:
            if item[0] > target + tol:
                self._pending = item
                break
            current = item
        else:
            self._pending = None  # end of stream: the last frame stays on screen
        self._cache[index] = current[1]
        while len(self._cache) > CACHE_FRAMES:
            self._cache.popitem(last=False)
        return current[1]

    def _shape(self, frame) -> tuple[int, int]:
        turns = rotation_turns(frame)
        h, w = (frame.width, frame.height) if turns % 2 else (frame.height, frame.width)
        return apply_crops(np.empty((h, w, 0), np.uint8), self.crops).shape[:2]

    def frame(self, index: int) -> np.ndarray:
        """[H,W,3] uint8 RGB of source frame ``index`` (0-based, clamped to the last frame): upright and cropped."""
        decoded = self._decoded(index)
        img = apply_crops(upright(self._convert.bytes(decoded), rotation_turns(decoded)), self.crops)
        return np.ascontiguousarray(img)

    def image(self, index: int) -> torch.Tensor:
        """[H,W,3] float32 0..1 of source frame ``index``: the frame the host's ``get_components()`` gives as
        IMAGE ``[index]`` for the same VIDEO (its pixel rule, upright, cropped)."""
        decoded = self._decoded(index)
        img = self._convert.floats(decoded).numpy()
        img = apply_crops(upright(img, rotation_turns(decoded)), self.crops)
        return torch.from_numpy(np.ascontiguousarray(img))

    def close(self) -> None:
        self._container.close()


class VideoSource:
    """A video file as the sampler loop's source (same interface as ``Source``), decoded on demand.

    th, tw: the crop size; fps: the output (audio) frame rate; end: 'hold' or 'pingpong'."""

    def __init__(self, video: VideoFile, fps: float, th: int, tw: int, end: str = "hold"):
        if end not in SOURCE_END:
            raise ValueError(f"source_end must be one of {SOURCE_END} (got '{end}').")
        self.video, self.fps, self.th, self.tw, self.end = video, float(fps), th, tw, end
        self.source_fps = float(video.fps)

    @property
    def num_frames(self) -> int:
        return self.video.num_frames

    @property
    def is_image(self) -> bool:
        return self.num_frames == 1

    @property
    def height(self) -> int:
        return self.video.height

    @property
    def width(self) -> int:
        return self.video.width

    def index(self, frame: int) -> int:
        """Source frame index shown at output frame ``frame``."""
        return source_frame_index(frame, self.fps, self.source_fps, self.num_frames, self.end)

    def frames_at(self, frames) -> torch.Tensor:
        """[len, th, tw, 3] float32 0..1: the cropped source frames shown at the given output frames."""
        images = [self.video.image(self.index(f)) for f in frames]
        return resize_and_crop(torch.stack(images), self.th, self.tw)

    def fingerprint(self) -> tuple:
        """What identifies this source for resume keys (path, size and mtime of the file; its trim, crops and pixel
        rule; fps; frame count)."""
        import os
        v = self.video
        stat = os.stat(v.path) if isinstance(v.path, (str, os.PathLike)) else None
        return (str(v.path), stat and stat.st_size, stat and stat.st_mtime_ns, v.start_s, v.duration_s, v.crops,
                v.pixels, self.source_fps, self.num_frames)
