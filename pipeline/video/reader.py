"""The source video read from its file window by window (PyAV), never decoded whole.

``VideoSource`` has the interface of ``sampler.source.Source`` (``index``, ``frames_at``, ``num_frames``,
``is_image``, ``th``/``tw``, ``source_fps``/``fps``, ``end``), so the loop cannot tell them apart. Which
source frame an output frame shows is ``window_plan.source_frame_index`` (the one owner of that rule);
this module only fetches source frame ``i``: the last frame starting by ``t0 + (i + 1/2)/source_fps`` (``t0`` =
the first frame's timestamp, ``source_fps`` = the stream's average rate; the half frame absorbs container
timestamp rounding). For a constant-frame-rate video
that is the i-th decoded frame, exactly what core's ``GetVideoComponents`` gives as IMAGE ``[i]``
(same ``rgb24 / 255`` float conversion, so both paths produce identical renders); for a variable frame
rate it is the frame shown at that time.

Frames are decoded forward with one open decoder; a request behind the decoder seeks to the previous
keyframe. The last ``CACHE_FRAMES`` decoded frames stay cached as uint8 (a window's source frames
overlap the previous window's by the motion frames), so memory is bounded by that cache whatever the
video's length. Rotated phone clips (display matrix) come out upright.
"""
from __future__ import annotations

from collections import OrderedDict
from fractions import Fraction

import numpy as np
import torch

from ..resolution import resize_and_crop
from ..window_plan import SOURCE_END, source_frame_index

# uint8 frames kept decoded: >= the largest motion-frame overlap (33) + 1.
CACHE_FRAMES = 34
# A frame whose timestamp is up to this fraction of a frame after the target time counts as on screen:
# containers round timestamps (Matroska to 1 ms), so frame i of a constant-rate video is near, not at, i/fps.
_TIME_TOLERANCE = 0.5


def _av():
    try:
        import av
    except ImportError:  # av ships with ComfyUI; outside it, requirements.txt installs it
        raise ImportError("Reading a VIDEO needs PyAV: pip install av") from None
    return av


def _upright(frame) -> np.ndarray:
    """[H,W,3] uint8 RGB of a decoded frame, rotated as its display matrix says (counter-clockwise degrees)."""
    img = frame.to_ndarray(format="rgb24")
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(img, k=turns)) if turns else img


class VideoFile:
    """Random access to the frames of one video file by index, decoding forward from the nearest keyframe.

    path: a file path or a readable binary file object (a ``VideoFromFile`` over BytesIO); start_s/duration_s: a
    trim (newer core ``Load Video`` offers one): frame 0 is the one on screen at ``start_s``, and the video ends
    after ``duration_s`` seconds (0: at its end)."""

    def __init__(self, path, start_s: float = 0.0, duration_s: float = 0.0):
        av = _av()
        self.path = path
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
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._decoder = None
        first = self._restart(0.0)
        self._t0 = first[0] + start_s
        self._pending = first
        self.height, self.width = _upright(first[1]).shape[:2]
        self.num_frames = max(1, self._count_frames() - round(start_s * self.fps))
        if duration_s > 0:
            self.num_frames = min(self.num_frames, max(1, round(duration_s * self.fps)))

    # -- decoding -------------------------------------------------------------------------------------------------
    def _frames(self):
        """(time, decoded frame) in order; frames are converted to RGB only when asked for."""
        for frame in self._container.decode(self._stream):
            if frame.time is not None:
                yield float(frame.time), frame

    def _restart(self, time_s: float):
        """Seek to the keyframe at or before ``time_s`` and return the first decoded (time, image)."""
        if time_s > 0:
            self._container.seek(int(time_s / self._stream.time_base) + (self._stream.start_time or 0),
                                 stream=self._stream, backward=True, any_frame=False)
        else:
            self._container.seek(self._stream.start_time or 0, stream=self._stream, backward=True)
        self._decoder = self._frames()
        try:
            return next(self._decoder)
        except StopIteration:
            raise ValueError(f"source_video: {self.path!r} has no decodable video frame.") from None

    def _count_frames(self) -> int:
        """Frames in the stream: the container's count, else its video packets (demuxed, not decoded), else
        duration x rate (a file object that cannot be re-opened)."""
        if self._stream.frames:
            return int(self._stream.frames)
        if isinstance(self.path, (str, bytes)) or hasattr(self.path, "__fspath__"):
            with _av().open(self.path) as probe:
                return max(1, sum(packet.size > 0 for packet in probe.demux(probe.streams.video[0])))
        if self._stream.duration:
            return max(1, round(float(self._stream.duration * self._stream.time_base * self.fps)))
        return max(1, round(self._container.duration / 1e6 * float(self.fps)))

    def _time(self, index: int) -> float:
        return self._t0 + index / float(self.fps)

    def frame(self, index: int) -> np.ndarray:
        """[H,W,3] uint8 RGB of source frame ``index`` (0-based, clamped to the last frame)."""
        index = min(max(0, index), self.num_frames - 1)
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        target = self._time(index)
        tol = _TIME_TOLERANCE / float(self.fps)
        if self._pending is None or self._pending[0] > target + tol or target - self._pending[0] > 4.0:
            # behind the decoder (or far ahead): seek instead of decoding every frame in between
            self._pending = self._restart(max(0.0, target - self._t0))
        current = self._pending
        for item in self._decoder:
            if item[0] > target + tol:
                self._pending = item
                break
            current = item
        else:
            self._pending = None  # end of stream: the last frame stays on screen
        image = _upright(current[1])
        self._cache[index] = image
        while len(self._cache) > CACHE_FRAMES:
            self._cache.popitem(last=False)
        return image

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
        images = [torch.from_numpy(self.video.frame(self.index(f))) / 255.0 for f in frames]
        return resize_and_crop(torch.stack(images), self.th, self.tw)

    def fingerprint(self) -> tuple:
        """What identifies this source for resume keys (path, size and mtime of the file; fps; frame count)."""
        import os
        path = self.video.path
        stat = os.stat(path) if isinstance(path, (str, os.PathLike)) else None
        return (str(path), stat and stat.st_size, stat and stat.st_mtime_ns, self.source_fps, self.num_frames)
