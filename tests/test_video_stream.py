"""Streaming in and out: the VIDEO source read window by window, the mp4 written window by window, resume after
an interruption at several windows (identical file frames), continue from a previous render, and the one rule
for which source frame a window shows."""
import os

import numpy as np
import pytest
import torch

from codec_standins import TinyClip, TinyCodec
from infinitetalk_lipsync.pipeline.sampler.loop import Job, Settings, make_plan, run
from infinitetalk_lipsync.pipeline.sampler.resume import Checkpoints, render_key
from infinitetalk_lipsync.pipeline.sampler.source import Source
from infinitetalk_lipsync.pipeline.video.reader import VideoFile, VideoSource
from infinitetalk_lipsync.pipeline.video.render import continue_state, render
from infinitetalk_lipsync.pipeline.window_plan import plan_windows
from mp4_rotation import set_rotation
from sampler_fakes import FakeDiT, Stop as _Stop, audio_embeds, stopper as _stopper

av = pytest.importorskip("av")
H, W = 16, 32


def _write_video(path, frames=45, fps=30, size=(24, 40), codec="libx264", fmt=None):
    """A clip whose frame i has a distinct colour; lossless-ish so lookups are checkable."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 200, (*size, 3), dtype=np.uint8)
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = size
        s.pix_fmt = "yuv420p"
        if codec == "libx264":
            s.options = {"crf": "0", "g": "10"}
        for i in range(frames):
            img = base.copy()
            img[:, :, 2] = (i * 5) % 256
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))


def _decode_all(path):
    """What core's GetVideoComponents gives: every frame as rgb24 / 255."""
    with av.open(str(path)) as c:
        return torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) / 255.0 for f in c.decode(video=0)])


def _job(source, lengths=(50,), **settings):
    base = dict(steps=2, shift=5.0, cfg=5.0, audio_cfg=4.0, window=17, motion=5, seed=3)
    base.update(settings)
    gen = torch.Generator().manual_seed(5)
    return Job(context=torch.randn(7, 4096, generator=gen), context_null=torch.randn(5, 4096, generator=gen),
               audio=audio_embeds(lengths), source=source, settings=Settings(**base))


def _mp4_frames(path):
    return _decode_all(path)


@pytest.mark.parametrize("fmt,codec", [("mp4", "libx264"), ("matroska", "libx264"), ("matroska", "mpeg4")])
def test_video_file_gives_every_frame_by_index_any_order(tmp_path, fmt, codec):
    path = tmp_path / f"clip.{fmt}"
    _write_video(path, fmt=fmt, codec=codec)
    reference = _decode_all(path)
    video = VideoFile(str(path))
    assert video.num_frames == reference.shape[0] == 45 and float(video.fps) == 30
    order = list(range(0, 45, 3)) + [44, 2, 30, 29, 28, 0, 44, 44, 10]  # forward, then back (seeks) and repeats
    for i in order:
        assert torch.equal(torch.from_numpy(video.frame(i)) / 255.0, reference[i]), i
    video.close()


def test_reading_backwards_fills_the_cache_and_gives_the_same_frames(tmp_path):
    """Ping-pong past a source's end reads it backwards: one seek decodes the frames before the asked one too
    (through the same rule), so the next backward reads are cache hits, and every frame is the forward one."""
    path = tmp_path / "clip.mp4"
    _write_video(path, frames=90)
    reference = _decode_all(path)
    video = VideoFile(str(path))
    restarts = []
    restart = video._restart
    video._restart = lambda t: restarts.append(t) or restart(t)
    for i in list(range(60, 90)) + list(range(89, -1, -1)):
        assert torch.equal(torch.from_numpy(video.frame(i)) / 255.0, reference[i]), i
    video.close()
    assert len(restarts) <= 1 + -(-90 // 32), restarts  # about one seek per cache's worth of backward frames


@pytest.mark.parametrize("end", ["hold", "pingpong"])
def test_streamed_source_equals_image_source(tmp_path, end):
    path = tmp_path / "clip.mp4"
    _write_video(path, frames=20)
    image = Source(_decode_all(path), 30.0, 25.0, H, W, end)
    streamed = VideoSource(VideoFile(str(path)), 25.0, H, W, end)
    frames = list(range(0, 60)) + [3, 59, 17]
    assert [streamed.index(f) for f in frames] == [image.index(f) for f in frames]
    assert torch.equal(streamed.frames_at(frames), image.frames_at(frames))


def test_plan_report_names_the_frame_the_loop_uses():
    """Issue 11: with ping-pong the reported reference frame is the one the loop looks up (one owner of the rule)."""
    for end in ("hold", "pingpong"):
        plan = plan_windows([300], window=17, motion=5, fps=25.0, source_fps=25.0, source_frames=20, source_end=end)
        src = Source(torch.rand(20, 8, 8, 3), 25.0, 25.0, 8, 8, end)
        assert [w.ref_frame for w in plan.windows] == [src.index(w.start) for w in plan.windows]
    assert plan.windows[2].ref_frame != 19  # ping-pong came back, hold would say 19


@pytest.mark.parametrize("degrees,turns", [(90, 1), (180, 2), (270, 3)])
def test_rotated_video_comes_out_upright(tmp_path, degrees, turns):
    """A phone clip's display matrix (written into the mp4 track header): upright frames, width and height swapped
    for 90/270, the same quarter turns (counter-clockwise, np.rot90) current core applies; core 0.3.64/0.8.0's
    get_components gives the stored, sideways frames (tests/integration/test_video_source_comfyui.py)."""
    path = tmp_path / "phone.mp4"
    _write_video(path, frames=12)
    set_rotation(str(path), degrees)
    raw = _decode_all(path)  # as stored
    with av.open(str(path)) as c:
        assert next(iter(c.decode(video=0))).rotation % 360 == degrees
    video = VideoFile(str(path))
    assert (video.height, video.width) == ((40, 24) if turns % 2 else (24, 40))
    for i in (0, 7, 11, 3):
        assert torch.equal(video.image(i), torch.rot90(raw[i], k=turns))
        assert torch.equal(torch.from_numpy(video.frame(i)) / 255.0, torch.rot90(raw[i], k=turns))
    streamed = VideoSource(video, 30.0, 40, 24)  # a portrait render of a portrait clip: nothing cropped
    if turns % 2:
        assert torch.equal(streamed.frames_at([5])[0], torch.rot90(raw[5], k=turns))


def test_streamed_render_equals_in_memory_render_and_writes_the_mp4(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_video(path)
    frames, audio, fps = run(FakeDiT(), TinyCodec(), TinyClip(), _job(Source(_decode_all(path), 30.0, 25.0, H, W)))
    job = _job(VideoSource(VideoFile(str(path)), 25.0, H, W), denoise=0.5, steps=4)
    ref = run(FakeDiT(), TinyCodec(), TinyClip(), _job(Source(_decode_all(path), 30.0, 25.0, H, W), denoise=0.5,
                                                      steps=4))[0]
    out = render(FakeDiT(), TinyCodec(), TinyClip(), job, str(tmp_path / "out.mp4"),
                 Checkpoints(str(tmp_path / "ck"), "k"), keep_frames=True)
    assert torch.equal(out.frames, ref)
    decoded = _mp4_frames(out.path)
    assert decoded.shape == ref.shape and (decoded - ref).abs().mean() < 0.02  # H.264 at crf 19
    with av.open(out.path) as c:
        a = c.streams.audio[0]
        assert abs(float(a.duration * a.time_base) - 50 / 25) < 1 / 25
    assert out.audio["waveform"].shape[-1] == round(50 / 25 * 16000)
    assert not os.path.exists(str(tmp_path / "ck" / "k"))  # checkpoints removed when complete
    assert frames.shape == ref.shape


@pytest.mark.parametrize("stop_at_step", [1, 4, 5, 9])
def test_resume_after_interruption_gives_the_same_file(tmp_path, stop_at_step):
    """2 steps per window: stopping after step 1, 4, 5, 9 stops inside window 0, 2, 2 (first step), 4."""
    path = tmp_path / "clip.mp4"
    _write_video(path)

    def job():
        return _job(VideoSource(VideoFile(str(path)), 25.0, H, W), lengths=(70,))
    whole = render(FakeDiT(), TinyCodec(), TinyClip(), job(), str(tmp_path / "whole.mp4"),
                   Checkpoints(str(tmp_path / "ck"), "whole"))
    store = Checkpoints(str(tmp_path / "ck"), "resumed")
    with pytest.raises(_Stop):
        render(FakeDiT(), TinyCodec(), TinyClip(), job(), str(tmp_path / "r.mp4"), store,
               callbacks=_stopper(stop_at_step))
    assert os.path.isdir(store.folder) and not os.path.exists(tmp_path / "r.mp4")
    resumed = render(FakeDiT(), TinyCodec(), TinyClip(), job(), str(tmp_path / "r.mp4"), store)
    assert resumed.resumed_at == stop_at_step // 2
    a, b = _mp4_frames(resumed.path), _mp4_frames(whole.path)
    differ = [i for i in range(a.shape[0]) if not torch.equal(a[i], b[i])]
    assert a.shape == b.shape and not differ, f"frames differ: {differ}"
    assert not os.path.exists(store.folder)


def test_resume_off_starts_over_and_keys_follow_every_setting(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_video(path)
    job = _job(VideoSource(VideoFile(str(path)), 25.0, H, W))
    store = Checkpoints(str(tmp_path / "ck"), "k")
    with pytest.raises(_Stop):
        render(FakeDiT(), TinyCodec(), TinyClip(), job, str(tmp_path / "r.mp4"), store, callbacks=_stopper(4))
    assert store.load()[0] == 2
    assert render(FakeDiT(), TinyCodec(), TinyClip(), job, str(tmp_path / "r.mp4"), store,
                  resume=False).resumed_at == 0
    key = render_key(job=job, crf=19)
    assert render_key(job=job, crf=19) == key
    assert render_key(job=job, crf=20) != key
    for change in (lambda j: setattr(j.settings, "seed", 4), lambda j: j.audio.speakers[0].add_(1e-3),
                   lambda j: j.context.mul_(1.001)):
        other = _job(VideoSource(VideoFile(str(path)), 25.0, H, W))
        change(other)
        assert render_key(job=other, crf=19) != key
    os.utime(path, ns=(1, 1))  # the source file changed on disk
    assert render_key(job=_job(VideoSource(VideoFile(str(path)), 25.0, H, W)), crf=19) != key


def test_continue_from_a_render_that_ended_on_a_window_equals_one_render(tmp_path):
    """Lossless frames of the first 3 windows (17 + 2 x 12 = 41 frames), the whole audio, the same seed: the
    continued render is the rest of the one-go render, bit for bit."""
    source = Source(torch.rand(60, H, W, 3, generator=torch.Generator().manual_seed(2)), 25.0, 25.0, H, W)
    once = run(FakeDiT(), TinyCodec(), TinyClip(), _job(source, lengths=(80,)))[0]
    job = _job(source, lengths=(80,))
    plan = make_plan(job)
    start, state = continue_state(plan, 41, once[:41], H, W)
    assert start == 3
    out = render(FakeDiT(), TinyCodec(), TinyClip(), job, str(tmp_path / "c.mp4"), Checkpoints(str(tmp_path), "c"),
                 keep_frames=True, start=start, state=state)
    assert out.first_frame == 41 and torch.equal(out.frames, once[41:])
    assert out.audio["waveform"].shape[-1] == round(39 / 25 * 16000)
    with pytest.raises(ValueError, match="end of a window"):
        continue_state(plan, 40, once[:40], H, W)


def test_trimmed_video_starts_at_its_start_time(tmp_path):
    """A trim (start 0.5 s, 0.6 s long) as newer core Load Video sets it: frame 0 is the frame shown at 0.5 s."""
    path = tmp_path / "clip.mp4"
    _write_video(path)
    reference = _decode_all(path)
    video = VideoFile(str(path), start_s=0.5, duration_s=0.6)
    assert video.num_frames == 18
    assert torch.equal(torch.from_numpy(video.frame(0)) / 255.0, reference[15])
    assert torch.equal(torch.from_numpy(video.frame(17)) / 255.0, reference[32])
