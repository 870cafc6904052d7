"""Writing overlaps computing (``pipeline/video/render.py``): a window's segment is encoded while the sampler
computes the next window, in order; a write that fails stops the render with its own error and keeps every window
written before it; a stop keeps the window already computed."""
import threading

import pytest

from codec_standins import TinyClip, TinyCodec
from infinitetalk_lipsync.pipeline.sampler.resume import Checkpoints
from infinitetalk_lipsync.pipeline.video import render as render_module
from infinitetalk_lipsync.pipeline.video.reader import VideoFile, VideoSource
from sampler_fakes import FakeDiT
from test_video_stream import H, W, _job, _write_video


def _source(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_video(path)
    return VideoSource(VideoFile(str(path)), 25.0, H, W)


def test_a_window_is_encoded_while_the_next_window_is_computed(tmp_path, monkeypatch):
    asked_for_next = threading.Event()
    sample, encode = render_module.sample, render_module.encode_segment
    seen = {}

    def watched_sample(*args, **kwargs):
        for result in sample(*args, **kwargs):
            yield result
            asked_for_next.set()  # the render resumed the sampler: the next window is being computed

    def slow_encode(path, frames, fps, crf):
        if not seen:  # window 0's segment: finishes only once the sampler computes window 1
            seen["overlapped"] = asked_for_next.wait(timeout=20)
            seen["thread"] = threading.current_thread().name
        encode(path, frames, fps, crf)

    monkeypatch.setattr(render_module, "sample", watched_sample)
    monkeypatch.setattr(render_module, "encode_segment", slow_encode)
    out = render_module.render(FakeDiT(), TinyCodec(), TinyClip(), _job(_source(tmp_path)), str(tmp_path / "o.mp4"),
                               Checkpoints(str(tmp_path / "ck"), "k"))
    assert seen["overlapped"], "window 0 was written before window 1 started: writing did not overlap computing"
    assert seen["thread"] != threading.main_thread().name
    assert len(out.seconds_per_window) > 2


def test_a_failed_write_stops_the_render_with_its_error_and_keeps_the_windows_before(tmp_path, monkeypatch):
    encode, written = render_module.encode_segment, []

    def failing_encode(path, frames, fps, crf):
        if len(written) == 1:
            raise OSError(28, "No space left on device")
        encode(path, frames, fps, crf)
        written.append(path)

    monkeypatch.setattr(render_module, "encode_segment", failing_encode)
    store = Checkpoints(str(tmp_path / "ck"), "k")
    with pytest.raises(OSError, match="No space left"):
        render_module.render(FakeDiT(), TinyCodec(), TinyClip(), _job(_source(tmp_path)), str(tmp_path / "o.mp4"),
                             store)
    resumed_at, state = store.load()
    assert resumed_at == 1 and state is not None  # window 0 is on disk and committed; window 1 is not
    monkeypatch.setattr(render_module, "encode_segment", encode)
    again = render_module.render(FakeDiT(), TinyCodec(), TinyClip(), _job(_source(tmp_path)), str(tmp_path / "o.mp4"),
                                 store)
    assert again.resumed_at == 1
