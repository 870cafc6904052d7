"""End-to-end window loop on CPU with a DiT-shaped fake model and the tiny codec."""
import math

import pytest
import torch

from codec_standins import TinyClip, TinyCodec
from infinitetalk_lipsync.pipeline.sampler.guidance import Guidance
from infinitetalk_lipsync.pipeline.sampler.loop import Callbacks, Job, Settings, make_plan, run, sample, window_seed
from infinitetalk_lipsync.pipeline.sampler.schedule import timesteps
from infinitetalk_lipsync.pipeline.sampler.source import Source
from infinitetalk_lipsync.pipeline.speaker_masks import default_layout
from sampler_fakes import FakeDiT, audio_embeds, video

H = W = 16


def _job(lengths=(50,), frames=60, source_fps=25.0, **settings):
    base = dict(steps=2, shift=5.0, cfg=5.0, audio_cfg=4.0, window=17, motion=5, seed=3)
    base.update(settings)
    src = Source(video(frames), source_fps, 25.0, H, W)
    gen = torch.Generator().manual_seed(5)
    layout = default_layout(H, W) if len(lengths) == 2 else None
    return Job(context=torch.randn(7, 4096, generator=gen), context_null=torch.randn(5, 4096, generator=gen),
               audio=audio_embeds(lengths), source=src, settings=Settings(**base), speaker_layout=layout)


def _run(job, **kw):
    return run(FakeDiT(), TinyCodec(), TinyClip(), job, **kw)


@pytest.mark.parametrize("case", [
    dict(),                                   # V2V sparse-frame, 4 windows
    dict(denoise=0.5, steps=4),               # V2V SDEdit
    dict(frames=1),                           # I2V
    dict(source_fps=30.0),                    # 30 fps source
    dict(lengths=(10,)),                      # audio shorter than one window
    dict(lengths=(50, 50)),                   # two speakers
    dict(cfg=1.0, solver="unipc"),            # 2-call guidance, another solver
    dict(frames=20, source_end="pingpong"),   # source shorter than audio
])
def test_output_matches_audio_length(case):
    job = _job(**case)
    frames, audio, fps = _run(job)
    n = job.audio.num_frames
    assert frames.shape == (n, H, W, 3) and fps == 25.0
    assert torch.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1
    assert audio["waveform"].shape[-1] == round(n / fps * audio["sample_rate"])
    assert audio["waveform"].shape[:2] == (1, 1)
    assert len(make_plan(job).windows) >= (1 if n <= 17 else 3)


def test_batched_and_sequential_branches_agree():
    a, _, _ = _run(_job(batch_branches=True))
    b, _, _ = _run(_job(batch_branches=False))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_batched_branches_use_one_forward_per_step():
    model = FakeDiT()
    job = _job(lengths=(17,), batch_branches=True)
    list(sample(model, TinyCodec(), TinyClip(), job))
    assert model.calls == [3, 3]
    model = FakeDiT()
    job.settings.batch_branches = False
    job.settings.cfg = 1.0
    list(sample(model, TinyCodec(), TinyClip(), job))
    assert model.calls == [1] * 4


def test_same_seed_same_video_and_window_seeds_differ():
    a, _, _ = _run(_job())
    b, _, _ = _run(_job())
    assert torch.equal(a, b)
    assert len({window_seed(3, k) for k in range(100)}) == 100
    c, _, _ = _run(_job(seed=4))
    assert not torch.equal(a, c)


def test_progress_interrupt_and_previews():
    seen, previews = [], []
    job = _job()
    plan = make_plan(job)
    _run(job, callbacks=Callbacks(progress=lambda d, t: seen.append((d, t)),
                                  preview=lambda k, f: previews.append((k, f.shape[0]))))
    total = len(plan.windows) * 2
    assert seen == [(d, total) for d in range(1, total + 1)]
    assert [p[0] for p in previews] == list(range(len(plan.windows)))
    assert sum(p[1] for p in previews) == job.audio.num_frames

    class Stop(Exception):
        pass

    calls = []

    def interrupt():
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    with pytest.raises(Stop):
        _run(_job(), callbacks=Callbacks(interrupt=interrupt))


def test_one_window_matches_the_official_formulas_step_by_step():
    """Window 0 (I2V, 3-call CFG, Euler, no colour correction) recomputed from spec §5.5-5.7 by hand."""
    job = _job(lengths=(17,), frames=1, steps=3, colour_strength=0.0)
    codec, clip, model = TinyCodec(), TinyClip(), FakeDiT()
    shape = (16, 5, H // 8, W // 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(11))
    frames, _, _ = run(model, codec, clip, job, callbacks=Callbacks(noise=lambda k, s: noise))

    ref_img = job.source.frames_at([0])[0]
    y_lat = codec.encode(torch.cat([ref_img[None], torch.full((16, H, W, 3), 0.5)]))
    mask = torch.zeros(4, *y_lat.shape[1:])
    mask[:, 0] = 1
    y = torch.cat([mask, y_lat])[None]
    clip_fea = clip.clip(ref_img)
    emb = job.audio.speakers[0]
    idx = (torch.arange(17)[:, None] + torch.arange(-2, 3)).clamp(0, 17 + 3 - 1)
    padded = torch.cat([emb, emb[-3:].flip(0)])
    audio = padded[idx][None, None]
    ctx = torch.nn.functional.pad(job.context, (0, 0, 0, 0))[None]
    ctx_null = torch.nn.functional.pad(job.context_null, (0, 0, 0, 2))[None]
    z_mot = codec.encode(ref_img[None])
    t = timesteps(3, 5.0)
    z = noise.clone()
    for i in range(3):
        z[:, :1] = z_mot
        ti = t[i:i + 1]
        c = model(z[None], ti, ctx, clip_fea, y, audio)[0]
        d = model(z[None], ti, ctx_null, clip_fea, y, audio)[0]
        u = model(z[None], ti, ctx_null, clip_fea, y, torch.zeros_like(audio))[0]
        v = u + 5.0 * (c - d) + 4.0 * (d - u)
        z = z + (-v) * ((t[i] - t[i + 1]) / 1000)
        z[:, :1] = z_mot
    torch.testing.assert_close(frames, codec.decode(z), atol=1e-6, rtol=0)


def test_v2v_reference_frames_follow_timestamps():
    job = _job(frames=90, source_fps=30.0)
    plan = make_plan(job)
    for w in plan.windows:
        assert job.source.index(w.start) == math.floor(w.start / 25.0 * 30.0 + 1e-6)


def test_pingpong_and_hold_lookup():
    src = Source(video(4), 25.0, 25.0, H, W, end="pingpong")
    assert [src.index(f) for f in range(10)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    src = Source(video(4), 25.0, 25.0, H, W, end="hold")
    assert [src.index(f) for f in range(6)] == [0, 1, 2, 3, 3, 3]


@pytest.mark.parametrize("bad,match", [(dict(denoise=0.5, frames=1), "denoise"), (dict(denoise=0.0), "denoise"),
                                       (dict(colour_strength=2.0), "colour"), (dict(solver="heun"), "solver")])
def test_invalid_settings_fail_before_sampling(bad, match):
    model = FakeDiT()
    with pytest.raises(ValueError, match=match):
        run(model, TinyCodec(), TinyClip(), _job(**bad))
    assert model.calls == []


def test_guidance_object_is_fresh_per_window():
    assert Guidance(5.0, 4.0, apg=True).apg_text.running is None


class _SpyCodec(TinyCodec):
    def __init__(self):
        super().__init__()
        self.encoded, self.decoded = [], []

    def encode(self, frames):
        self.encoded.append(frames.clone())
        return super().encode(frames)

    def decode(self, latent):
        out = super().decode(latent)
        self.decoded.append(out.clone())
        return out


class _SpyClip(TinyClip):
    def __init__(self):
        super().__init__()
        self.frames = []

    def clip(self, frame):
        self.frames.append(frame.clone())
        return super().clip(frame)


def test_motion_frames_and_reference_frames_follow_the_official_loop():
    """Window 0: motion = VAE(reference). Window k: motion = VAE(last m colour-corrected frames of window k-1);
    reference/CLIP/y from the source frame at the window's start time."""
    job = _job(frames=90, source_fps=30.0, colour_strength=0.5)
    codec, clip = _SpyCodec(), _SpyClip()
    results = list(sample(FakeDiT(), codec, clip, job))
    plan = make_plan(job)
    m = job.settings.motion
    # per window the codec encodes: y (F frames), then the motion frames
    ys, motions = codec.encoded[0::2], codec.encoded[1::2]
    assert len(ys) == len(motions) == len(plan.windows)
    for k, w in enumerate(plan.windows):
        ref = job.source.frames_at([w.start])[0]
        assert torch.equal(clip.frames[k], ref) and torch.equal(ys[k][0], ref)
        assert bool((ys[k][1:] == 0.5).all()) and ys[k].shape[0] == job.settings.window
        if k == 0:
            assert torch.equal(motions[0], ref[None])
        else:
            decoded = codec.decoded[k - 1]
            assert motions[k].shape[0] == m and not torch.equal(motions[k], decoded[-m:])  # colour-corrected, not raw
    kept = torch.cat([r.frames for r in results])
    torch.testing.assert_close(motions[1], kept[plan.windows[1].start:plan.windows[1].start + m])


def test_denoise_starts_from_noised_source_latents_at_the_documented_step():
    from infinitetalk_lipsync.pipeline.sampler.schedule import add_noise, make_schedule

    class Spy(FakeDiT):
        def forward(self, x, t, *args, **kw):
            self.first = getattr(self, "first", (x[0].clone(), t.clone()))
            return super().forward(x, t, *args, **kw)

    job = _job(lengths=(17,), frames=40, denoise=0.5, steps=4, batch_branches=False)
    noise = torch.randn(16, 5, H // 8, W // 8, generator=torch.Generator().manual_seed(2))
    model, codec = Spy(), TinyCodec()
    list(sample(model, codec, TinyClip(), job, callbacks=Callbacks(noise=lambda k, s: noise)))
    schedule = make_schedule(4, job.settings.shift, 0.5)
    assert schedule.start == 2 and len(model.calls) == 2 * 3
    x, t = model.first
    assert torch.equal(t, schedule.t[2:3])
    expected = add_noise(codec.encode(job.source.frames_at(range(0, 17))), noise, schedule.t[2])
    torch.testing.assert_close(x[:, 1:], expected[:, 1:], atol=1e-6, rtol=0)
    torch.testing.assert_close(x[:, :1], codec.encode(job.source.frames_at([0])), atol=1e-6, rtol=0)
