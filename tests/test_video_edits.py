"""A core VIDEO's own edits (trim, crop, rotation, pixel conversion) stream exactly: the reader gives, frame for
frame, what that VIDEO's ``get_components()`` gives, for stand-ins of each ComfyUI release (core_video_fakes);
edits that cannot stream are decoded by core when they fit and refused with a message when they do not."""
import io

import pytest
import torch

from core_video_fakes import core_video_class
from infinitetalk_lipsync.nodes import host, host_video
from infinitetalk_lipsync.pipeline.video.reader import VideoFile, VideoSource
from mp4_rotation import set_rotation

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")


def _clip(path, frames=45, fps=30, size=(24, 40), fmt=None):
    """Noisy frames (pixel rules differ on them), keyframe every 10 frames, width not a multiple of 32."""
    rng = np.random.default_rng(1)
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = size
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "0", "g": "10"}
        for i in range(frames):
            img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            img[:2, :2] = i * 5
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))
    return str(path)


def _streamed_equals_core(video):
    kind, value = host.video_source(video, "source_video")
    assert kind == "file"
    reader = VideoFile(*value)
    core = video.get_components().images
    assert reader.num_frames == core.shape[0]
    assert (reader.height, reader.width) == tuple(core.shape[1:3])
    order = list(range(core.shape[0])) + [0, core.shape[0] - 1, 3, 2]  # forward, then back (seeks)
    differ = [i for i in order if not torch.equal(reader.image(i), core[i])]
    assert not differ, f"frames differ from get_components(): {differ}"
    reader.close()
    return value


@pytest.mark.parametrize("release,kwargs", [
    ("0.8.0", {}),
    ("trim", {"start_time": 0.51, "duration": 0.6}),
    ("trim", {"start_time": -0.5}),
    ("crop", {}),
    ("crop", {"start_time": 0.51, "duration": 0.6, "crop": (3, 5, 21, 13)}),
    ("crop", {"start_time": -0.4, "crop": (0, 0, 40, 24)}),  # whole frame: no crop
    ("ops", {"spatial_ops": [("crop_aligned", 3, 5, 31, 17), ("crop", 1, 1, 9, 7)]}),
    ("ops", {"start_time": 1.0, "duration": 0.3, "spatial_ops": [("crop", 0, 3, 40, 9)]}),
])
def test_streamed_frames_equal_the_video_objects_own_get_components(tmp_path, release, kwargs):
    cls = core_video_class(release)
    _streamed_equals_core(cls(_clip(tmp_path / "clip.mp4"), **kwargs))


@pytest.mark.parametrize("fmt", ["mp4", "matroska"])
def test_trim_with_a_file_object_source(tmp_path, fmt):
    data = io.BytesIO(open(_clip(tmp_path / "clip", fmt=fmt), "rb").read())
    _streamed_equals_core(core_video_class("crop")(data, start_time=0.2, duration=0.5, crop=(4, 2, 30, 20)))


def test_pixel_rule_is_learnt_from_the_objects_class(tmp_path):
    assert host_video.pixel_rule(core_video_class("0.8.0")(None)) == "rgb24"
    assert host_video.pixel_rule(core_video_class("crop")(None)) == "float"
    # and the two really differ on ordinary H.264, so the rule matters
    path = _clip(tmp_path / "clip.mp4")
    assert not torch.equal(VideoFile(path, pixels="rgb24").image(3), VideoFile(path, pixels="float").image(3))


@pytest.mark.parametrize("degrees,turns", [(90, 1), (180, 2), (270, 3)])
def test_rotated_phone_clip_with_trim_and_crop_equals_newer_core(tmp_path, degrees, turns):
    path = _clip(tmp_path / "phone.mp4")
    set_rotation(path, degrees)
    video = core_video_class("crop")(path, start_time=0.2, crop=(2, 4, 16, 30))
    value = _streamed_equals_core(video)
    reader = VideoFile(*value)
    assert (reader.height, reader.width) == ((30, 16) if turns % 2 else (20, 16))


def test_a_resize_edit_is_decoded_by_core_or_refused(tmp_path, monkeypatch):
    cls = core_video_class("ops")
    video = cls(_clip(tmp_path / "clip.mp4"), spatial_ops=[("crop_aligned", 0, 0, 20, 20), ("scale", 10, 8, "area",
                                                                                               "disabled")])
    kind, (images, fps) = host.video_source(video, "source_video")
    assert kind == "frames" and images.shape == (45, 8, 10, 3) and fps == 30
    monkeypatch.setattr(host, "available_ram", lambda: 1 << 12)
    with pytest.raises(ValueError, match="source_video: it is resized.*cannot be streamed.*GiB"):
        host.video_source(video, "source_video")


def test_an_unknown_pending_edit_is_not_ignored(tmp_path):
    cls = core_video_class("ops")
    video = cls(_clip(tmp_path / "clip.mp4"))
    video.has_pending_frame_edits = lambda: True  # an edit stored where this pack does not look
    kind, (images, _) = host.video_source(video, "source_video")
    assert kind == "frames"


def test_a_trim_after_the_end_says_so(tmp_path):
    video = core_video_class("crop")(_clip(tmp_path / "clip.mp4"), start_time=5.0)
    with pytest.raises(ValueError, match="source_video: the trim starts at 5 s, after the last frame"):
        VideoFile(*host.video_source(video, "source_video")[1])


def test_resume_key_follows_the_trim_and_crop(tmp_path):
    path = _clip(tmp_path / "clip.mp4")
    cls = core_video_class("crop")

    def fingerprint(**kwargs):
        return VideoSource(VideoFile(*host.video_source(cls(path, **kwargs), "v")[1]), 25.0, 8, 8).fingerprint()
    base = fingerprint(start_time=0.2)
    assert fingerprint(start_time=0.2) == base
    assert fingerprint(start_time=0.2, crop=(2, 2, 20, 20)) != base
    assert fingerprint(start_time=0.3) != base
