"""Face-only dubbing streamed from a video file (issue 12): the streamed render equals the IMAGE path (Face Mask
-> Face Crop -> sampler -> Face Paste) bit for bit, pixels outside the feathered mask are the decoded source,
resume after an interruption gives the same file, the plan holds no frames, and the nodes wire it."""
import os
import pickle

import numpy as np
import pytest
import torch

from codec_standins import TinyClip, TinyCodec
from infinitetalk_lipsync.nodes import host
from infinitetalk_lipsync.nodes.face_stream import InfiniteTalkFacePlan
from infinitetalk_lipsync.nodes.mask import InfiniteTalkFaceCrop, InfiniteTalkFaceMask, InfiniteTalkFacePaste
from infinitetalk_lipsync.pipeline.mask import face_box
from infinitetalk_lipsync.pipeline.mask.face_stream import FaceCropSource
from infinitetalk_lipsync.pipeline.mask.regions import dilate
from infinitetalk_lipsync.pipeline.sampler.loop import Job, Settings, run
from infinitetalk_lipsync.pipeline.sampler.resume import Checkpoints, render_key
from infinitetalk_lipsync.pipeline.sampler.source import Source
from infinitetalk_lipsync.pipeline.video.reader import CACHE_FRAMES, VideoFile
from infinitetalk_lipsync.pipeline.video.render import render
from infinitetalk_lipsync.pipeline.video.writer import encode_segment
from sampler_fakes import FakeDiT, Stop as _Stop, audio_embeds, stopper as _stopper

av = pytest.importorskip("av")
H, W = 96, 128          # source video
CH, CW = 32, 32         # face crop the sampler generates
BOX = "44,30,76,70"
# Face Plan / Face Mask / Face Crop / Face Paste settings shared by both paths
CROP = dict(width=CW, height=CH, padding=0.3, window=0, region="lower_face", detect_every=5)
MASK = dict(dilation=2, smoothing=3)
PASTE = dict(feather=3, colour_match="lab", erode=1)


def _write_video(path, frames=45, fps=25, moving=False):
    """A textured clip (distinct per frame), nearly lossless; with ``moving`` a bright square drifts right
    (the fake face detector follows it)."""
    rng = np.random.default_rng(1)
    base = rng.integers(20, 200, (H, W, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width, s.pix_fmt = H, W, "yuv420p"
        s.options = {"crf": "0", "g": "12"}
        for i in range(frames):
            img = base.copy()
            img[..., 1] = (img[..., 1].astype(int) + 3 * i) % 256
            if moving:
                img[30:70, 40 + i // 2:72 + i // 2] = 250
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))


def _decode_all(path):
    with av.open(str(path)) as c:
        return torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) / 255.0 for f in c.decode(video=0)])


def _job(source, n=40, **settings):
    base = dict(steps=2, shift=5.0, cfg=5.0, audio_cfg=4.0, window=17, motion=5, seed=3)
    base.update(settings)
    gen = torch.Generator().manual_seed(5)
    return Job(context=torch.randn(7, 4096, generator=gen), context_null=torch.randn(5, 4096, generator=gen),
               audio=audio_embeds([n]), source=source, settings=Settings(**base))


def _plan(path, **kw):
    args = dict(CROP, **MASK, **PASTE, box=BOX)
    args.update(kw)
    return InfiniteTalkFacePlan().run(host.video_from_file(str(path)), **args)["result"][0]


def _image_path(path, n=40, mask=None, box=BOX, **job):
    """The short-clip IMAGE workflow on the decoded frames: Face Mask -> Face Crop -> sampler -> Face Paste."""
    frames = _decode_all(path)
    (masks,) = InfiniteTalkFaceMask().run(frames, CROP["region"], MASK["dilation"], MASK["smoothing"],
                                          CROP["detect_every"], mask=mask, box=box)["result"]
    crops, info, _ = InfiniteTalkFaceCrop().run(frames, **CROP, mask=None, box=box)
    generated = run(FakeDiT(), TinyCodec(), TinyClip(), _job(Source(crops, 25.0, 25.0, CH, CW), n, **job))[0]
    (pasted,) = InfiniteTalkFacePaste().run(generated, info, frames, **PASTE, mask=masks)
    return pasted, masks, frames


def _streamed(path, plan, folder, key="k", n=40, callbacks=None, keep_frames=True, **job):
    source = FaceCropSource(VideoFile(str(path)), plan, 25.0, CH, CW)
    try:
        return render(FakeDiT(), TinyCodec(), TinyClip(), _job(source, n, **job), str(folder / f"{key}.mp4"),
                      Checkpoints(str(folder / "ck"), key), keep_frames=keep_frames, callbacks=callbacks,
                      paste=source.paster())
    finally:
        source.video.close()


def test_streamed_face_render_equals_the_image_path_and_keeps_the_source_outside_the_mask(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_video(path)
    expected, masks, frames = _image_path(path, denoise=0.5, steps=4)
    out = _streamed(path, _plan(path), tmp_path, denoise=0.5, steps=4)
    # lossless frames (before H.264): bit for bit the IMAGE path's, at full resolution
    assert out.frames.shape == expected.shape == (40, H, W, 3)
    assert torch.equal(out.frames, expected)
    outside = dilate(masks[:40], PASTE["feather"]) == 0
    assert bool(outside.any()) and torch.equal(out.frames[outside], frames[:40][outside])
    assert not torch.equal(out.frames, frames[:40])  # the face changed
    # the file: the same frames through the same H.264 encoder, window by window (17, then 12 per window)
    ref_path = tmp_path / "ref.mp4"
    decoded = _decode_all(out.path)
    starts = [0, 17, 29, 40]
    ref = []
    for a, b in zip(starts, starts[1:]):
        encode_segment(str(ref_path), expected[a:b], 25.0)
        ref.append(_decode_all(ref_path))
    assert torch.equal(decoded, torch.cat(ref))
    with av.open(out.path) as c:
        assert c.streams.audio and c.streams.video[0].width == W


def test_tracked_face_over_a_video_equals_tracking_its_frames(tmp_path, monkeypatch):
    """One tracker for IMAGE and VIDEO: key frames decoded on demand give the IMAGE path's boxes and crop."""
    def fake_detect(frame):
        bright = (frame[..., 0] > 0.97) & (frame[..., 1] > 0.97)
        ys, xs = torch.nonzero(bright, as_tuple=True)
        if len(xs) == 0:
            return torch.zeros(0, 4)
        return torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
    monkeypatch.setattr(face_box, "detect_faces", fake_detect)
    path = tmp_path / "moving.mp4"
    _write_video(path, moving=True)
    frames = _decode_all(path)
    plan = _plan(path, box="", window=17)
    expected = face_box.track_faces(frames, detect_every=5)
    assert torch.equal(plan.crop.boxes, expected)
    _, info, _ = InfiniteTalkFaceCrop().run(frames, **dict(CROP, window=17))
    assert torch.equal(plan.crop.rects, info.rects)
    assert plan.crop.rects[-1, 0] > plan.crop.rects[0, 0]  # the crop follows the moving face


@pytest.mark.parametrize("stop_at_step", [1, 3, 6])
def test_resumed_face_render_gives_the_same_file(tmp_path, stop_at_step):
    """2 steps per window: stopping after step 1, 3, 6 stops inside window 0, 1, 3 (the colour match's running
    state of the paste is checkpointed with the motion frames)."""
    path = tmp_path / "clip.mp4"
    _write_video(path, frames=60)
    plan = _plan(path)
    whole = _streamed(path, plan, tmp_path, key="whole", n=58, keep_frames=False)
    with pytest.raises(_Stop):
        _streamed(path, plan, tmp_path, key="r", n=58, callbacks=_stopper(stop_at_step))
    resumed = _streamed(path, plan, tmp_path, key="r", n=58)
    assert resumed.resumed_at == stop_at_step // 2
    a, b = _decode_all(resumed.path), _decode_all(whole.path)
    assert a.shape == b.shape == (58, H, W, 3)
    differ = [i for i in range(a.shape[0]) if not torch.equal(a[i], b[i])]
    assert not differ, f"frames differ: {differ}"
    assert resumed.frames.shape == (58, H, W, 3)
    assert not os.path.exists(tmp_path / "ck" / "r")


def test_every_plan_setting_changes_the_render_key(tmp_path):
    path = tmp_path / "clip.mp4"
    _write_video(path)

    def key(**kw):
        source = FaceCropSource(VideoFile(str(path)), _plan(path, **kw), 25.0, CH, CW)
        return render_key(job=_job(source), crf=19)
    base = key()
    assert key() == base
    changes = [dict(feather=4), dict(colour_match="histogram"), dict(erode=0), dict(dilation=3), dict(smoothing=5),
               dict(region="mouth"), dict(padding=0.4), dict(box="44,30,76,72")]
    assert len({base, *(key(**c) for c in changes)}) == len(changes) + 1


def test_plan_holds_no_frames_and_window_memory_is_bounded(tmp_path):
    """The plan is per-frame boxes and rectangles (8 numbers a frame), whatever the frame size; after a render
    the paste keeps only a few masks and the reader its bounded cache."""
    short, long = tmp_path / "short.mp4", tmp_path / "long.mp4"
    _write_video(short, frames=20)
    _write_video(long, frames=120)
    a, b = len(pickle.dumps(_plan(short))), len(pickle.dumps(_plan(long)))
    assert b - a <= 100 * 8 * 8 + 512 and b < 20_000 < H * W * 3
    plan = _plan(long)
    source = FaceCropSource(VideoFile(str(long)), plan, 25.0, CH, CW)
    paste = source.paster()
    render(FakeDiT(), TinyCodec(), TinyClip(), _job(source, 110), str(tmp_path / "o.mp4"),
           Checkpoints(str(tmp_path / "ck"), "m"), paste=paste)
    assert len(paste._raw) <= plan.smoothing + 1 and len(source.video._cache) <= CACHE_FRAMES
    source.video.close()


def test_sampler_node_streams_the_face_and_refuses_what_it_cannot(tmp_path):
    from test_sampler_node import _inputs
    from infinitetalk_lipsync.nodes.sampler import InfiniteTalkSampler
    path = tmp_path / "clip.mp4"
    _write_video(path)
    plan = _plan(path)
    node = InfiniteTalkSampler()
    kw = _inputs(source=None, source_video=host.video_from_file(str(path)), face_plan=plan, source_fps=25.0,
                 audio_embeds=audio_embeds([40]), width=CW, height=CH)
    out = node.sample(**kw)
    frames, audio, fps, video_out = out["result"]
    assert frames.shape == (40, H, W, 3)
    assert f"face-only: the {CW}x{CH} face crop pasted back into the {W}x{H} frames" in out["ui"]["text"][0]
    with av.open(video_out.get_stream_source()) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (W, H)
    with pytest.raises(ValueError, match="continue_video does not work with face_plan"):
        node.sample(**dict(kw, continue_video=video_out))
    with pytest.raises(ValueError, match="face_plan: connect the video"):
        node.sample(**dict(kw, source=frames[:5], source_video=None))
    other = tmp_path / "other.mp4"
    _write_video(other, frames=30)
    with pytest.raises(ValueError, match="same Load Video"):
        node.sample(**dict(kw, source_video=host.video_from_file(str(other))))


def test_sam2_outline_streams_window_by_window_and_resumes(tmp_path, monkeypatch):
    """With SAM2 each window segments its own frames (prompted by the tracked box): the paste stays inside the crop
    rectangle (the source everywhere else), a resumed render gives the same file, and SAM2 is in the key."""
    pytest.importorskip("transformers.models.sam2_video")
    from sam2_tiny import TINY_TRUNK, tiny_hf_state_dict, to_meta_keys
    from infinitetalk_lipsync.pipeline.mask import sam2_keys, sam2_model
    for k, v in TINY_TRUNK.items():
        monkeypatch.setitem(sam2_keys.KNOWN_TRUNKS, k, v)
    torch.save({"model": to_meta_keys(tiny_hf_state_dict())}, str(tmp_path / "sam2.1_hiera_tiny.pt"))
    sam = sam2_model.load_sam2(str(tmp_path / "sam2.1_hiera_tiny.pt"))
    path = tmp_path / "clip.mp4"
    _write_video(path, frames=30)
    plan = _plan(path, sam2=sam)
    assert render_key(plan=plan) != render_key(plan=_plan(path)) and render_key(plan=plan) == render_key(plan=plan)
    whole = _streamed(path, plan, tmp_path, key="whole", n=29)
    frames = _decode_all(path)[:29]
    x0, y0, x1, y1 = plan.crop.rects[0].tolist()
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    assert torch.equal(whole.frames[:, outside], frames[:, outside])
    assert not torch.equal(whole.frames, frames)
    with pytest.raises(_Stop):
        _streamed(path, plan, tmp_path, key="r", n=29, callbacks=_stopper(3))
    resumed = _streamed(path, plan, tmp_path, key="r", n=29)
    assert resumed.resumed_at == 1
    assert torch.equal(_decode_all(resumed.path), _decode_all(whole.path))


def test_budget_counts_the_frames_output_at_full_resolution():
    """Face-only: the IMAGE output holds the pasted full-resolution frames, not the crops."""
    from infinitetalk_lipsync.pipeline.sampler.budget import estimate
    kw = dict(windows=3, steps_run=2, branches=2, frames=40, window=17, th=CH, tw=CW, model=FakeDiT(),
              batch_branches=False, keep_frames=True, source_hw=(H, W))
    assert estimate(**kw).host_frames_bytes == 40 * CH * CW * 3 * 4
    assert estimate(**kw, output_hw=(H, W)).host_frames_bytes == 40 * H * W * 3 * 4


@pytest.mark.parametrize("end", ["pingpong", "hold"])
def test_audio_longer_than_the_source_pastes_onto_the_frame_each_output_shows(tmp_path, end):
    """Past the source's end the output walks it backwards (ping-pong) or holds its last frame: each output
    frame is pasted onto the source frame it shows, with that frame's mask (the whole clip's, smoothed)."""
    path = tmp_path / "short.mp4"
    _write_video(path, frames=20)
    _, masks, frames = _image_path(path, n=20)
    source = FaceCropSource(VideoFile(str(path)), _plan(path), 25.0, CH, CW, end)
    try:
        out = render(FakeDiT(), TinyCodec(), TinyClip(), _job(source, 40), str(tmp_path / "long.mp4"),
                     Checkpoints(str(tmp_path / "ck"), "long"), keep_frames=True, paste=source.paster())
        shown = [source.index(i) for i in range(40)]
    finally:
        source.video.close()
    assert out.frames.shape == (40, H, W, 3)
    assert (shown[25] < shown[22]) if end == "pingpong" else shown[25] == 19
    for i, j in enumerate(shown):
        outside = dilate(masks[j:j + 1], PASTE["feather"])[0] == 0
        assert torch.equal(out.frames[i][outside], frames[j][outside]), (i, j)
