"""Stand-ins for core's ``VideoFromFile`` as each ComfyUI release defines it (attributes, and what its
``get_components()`` returns, written here from reading each release's code), to check that the streamed reader
gives the same frames for the same VIDEO object.

- ``"0.8.0"`` (also 0.3.64): ``VideoFromFile(file)``; every frame, rgb24 / 255, no rotation.
- ``"trim"``: the first releases with a trim: private ``start_time``/``duration`` only (no
  ``get_active_trim_window``), rgb24 / 255, no rotation.
- ``"crop"``: trim (``get_active_trim_window``) + one ``crop`` rectangle (even aligned on the upright frame),
  display-matrix rotation, float pixels (gbrpf32le, padded to a multiple of 32 wide; byte formats / 255).
- ``"ops"``: as ``"crop"`` with a list of spatial ops (``("crop_aligned"|"crop"|"scale", ...)``) and
  ``has_pending_frame_edits()``.
"""
import io
import types
from fractions import Fraction

import av
import numpy as np
import torch

_BYTES = {"yuvj420p", "yuvj422p", "yuvj444p", "rgb24", "rgba", "pal8"}


def _open(file):
    if isinstance(file, io.BytesIO):
        file.seek(0)
    return av.open(file)


def _float_pixels(frame, stream):
    if frame.format.name in _BYTES:
        return frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0
    if frame.width % 32 == 0:
        return frame.to_ndarray(format="gbrpf32le")
    w, h = -(-frame.width // 32) * 32, -(-frame.height // 32) * 32
    g = av.filter.Graph()
    src = g.add_buffer(width=frame.width, height=frame.height, format=frame.format.name, time_base=stream.time_base)
    pad = g.add("pad", f"{w}:{h}:0:0")
    fill = g.add("fillborders", f"left=0:right={w - frame.width}:top=0:bottom={h - frame.height}:mode=smear")
    sink = g.add("buffersink")
    src.link_to(pad)
    pad.link_to(fill)
    fill.link_to(sink)
    g.configure()
    src.push(frame)
    return np.ascontiguousarray(sink.pull().to_ndarray(format="gbrpf32le")[:frame.height, :frame.width])


def _even_rect(x, y, w, h, fw, fh):
    if w <= 0 or h <= 0:
        return None
    x, y = max(0, min(x, fw - 1)), max(0, min(y, fh - 1))
    x, y = x - x % 2, y - y % 2
    w, h = min(w, fw - x), min(h, fh - y)
    if (x, y, w, h) == (0, 0, fw, fh):
        return None
    w, h = w - w % 2, h - h % 2
    return (x, y, w, h) if w > 0 and h > 0 else None


def decode(file, start=0.0, duration=0.0, ops=(), floats=False, rotate=False):
    """Every frame as the release's get_components() computes it: [N,H,W,3] float32."""
    out = []
    with _open(file) as c:
        s = c.streams.video[0]
        start_pts, end_pts = int(start / s.time_base), int((start + duration) / s.time_base)
        if start_pts:
            c.seek(start_pts, stream=s)
        for f in c.decode(s):
            if f.pts < start_pts:
                continue
            if duration and f.pts >= end_pts:
                break
            img = _float_pixels(f, s) if floats else f.to_ndarray(format="rgb24").astype(np.float32) / 255.0
            if rotate and f.rotation:
                img = np.rot90(img, k=int(f.rotation // 90) % 4).copy()
            for kind, x, y, w, h in ops:
                if kind == "crop_aligned":
                    rect = _even_rect(x, y, w, h, img.shape[1], img.shape[0])
                    if rect is None:
                        continue
                    x, y, w, h = rect
                img = img[y:y + h, x:x + w]
            out.append(torch.from_numpy(np.ascontiguousarray(img)))
        rate = Fraction(s.average_rate)
    return types.SimpleNamespace(images=torch.stack(out), frame_rate=rate)


def _raw_duration(file):
    with _open(file) as c:
        return c.duration / av.time_base


def core_video_class(release: str):
    """A class named VideoFromFile (so its private fields mangle as core's do) behaving as ``release``."""
    if release == "0.8.0":
        class VideoFromFile:
            def __init__(self, file):
                self.__file = file

            def get_stream_source(self):
                return self.__file

            def get_components(self):
                return decode(self.__file)
    elif release == "trim":
        class VideoFromFile:
            def __init__(self, file, *, start_time=0, duration=0):
                self.__file, self.__start_time, self.__duration = file, start_time, duration

            def get_stream_source(self):
                return self.__file

            def get_components(self):
                start = self.__start_time
                if start < 0:
                    start = max(_raw_duration(self.__file) + start, 0)
                return decode(self.__file, start, self.__duration)
    elif release == "crop":
        class VideoFromFile:
            def __init__(self, file, *, start_time=0, duration=0, crop=None):
                self.__file, self.__start_time, self.__duration, self.__crop = file, start_time, duration, crop

            def get_stream_source(self):
                return self.__file

            def get_active_trim_window(self):
                start = self.__start_time
                if start < 0:
                    start = max(_raw_duration(self.__file) + start, 0.0)
                return float(start), float(self.__duration)

            def get_components(self):
                ops = [("crop_aligned", *self.__crop)] if self.__crop else []
                return decode(self.__file, *self.get_active_trim_window(), ops=ops, floats=True, rotate=True)
    elif release == "ops":
        class VideoFromFile:
            def __init__(self, file, *, start_time=0, duration=0, spatial_ops=()):
                self.__file, self.__start_time, self.__duration = file, start_time, duration
                self.__spatial_ops = list(spatial_ops)

            def get_stream_source(self):
                return self.__file

            def get_active_trim_window(self):
                return float(self.__start_time), float(self.__duration)

            def has_pending_frame_edits(self):
                return bool(self.__spatial_ops)

            def get_dimensions(self):
                with _open(self.__file) as c:
                    return c.streams.video[0].width, c.streams.video[0].height

            def get_frame_count(self):
                with _open(self.__file) as c:
                    return c.streams.video[0].frames

            def get_components(self):
                if any(op[0] == "scale" for op in self.__spatial_ops):
                    full = decode(self.__file, *self.get_active_trim_window(), floats=True, rotate=True)
                    op = next(op for op in self.__spatial_ops if op[0] == "scale")
                    full.images = torch.nn.functional.interpolate(full.images.movedim(-1, 1), size=(op[2], op[1]),
                                                                  mode="nearest").movedim(1, -1)
                    return full
                return decode(self.__file, *self.get_active_trim_window(), ops=self.__spatial_ops, floats=True,
                              rotate=True)
    else:
        raise ValueError(release)
    return VideoFromFile
