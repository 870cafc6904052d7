"""A whole tiny window through the loop with the golden tiny DiT weights and the tiny codec, against the
official formulas applied step by step (spec §5.5-5.8) from the same initial noise."""
import pytest
import torch

import golden
from codec_standins import TinyClip, TinyCodec
from infinitetalk_lipsync.pipeline.sampler.branches import NULL_AUDIO
from infinitetalk_lipsync.pipeline.sampler.loop import Callbacks, Job, Settings, run
from infinitetalk_lipsync.pipeline.sampler.schedule import timesteps
from infinitetalk_lipsync.pipeline.sampler.source import Source
from infinitetalk_lipsync.pipeline.speaker_masks import default_layout, latent_masks
from sampler_fakes import audio_embeds, video

dit = pytest.importorskip("infinitetalk_lipsync.pipeline.dit")


def _model():
    cfg = dit.DiTConfig.from_dict(golden.case("a_dit_tiny")["config"])
    model = dit.InfiniteTalkDiT(cfg)
    model.load_state_dict(golden.tensors("dit_tiny_weights.safetensors"))
    return model.eval(), cfg


def _job(cfg, speakers, steps, text_scale):
    h, w = (8 * n for n in golden.case("a_dit_tiny")["cases"][0]["lat_hw"])
    gen = torch.Generator().manual_seed(4)
    audio = audio_embeds([9] * speakers, layers=12, dim=768)
    return Job(context=torch.randn(7, cfg.text_dim, generator=gen), context_null=torch.randn(5, cfg.text_dim, generator=gen),
               audio=audio, source=Source(video(1, h, w), 25.0, 25.0, h, w),
               settings=Settings(steps=steps, shift=5.0, cfg=text_scale, audio_cfg=4.0, window=9, motion=5,
                                 colour_strength=0.0, seed=0),
               speaker_layout=default_layout(h, w) if speakers == 2 else None)


def _official(model, codec, clip, job, noise, zero_speakers=1):
    """The official loop for window 0, written out from the spec. The no-audio branches get ``zeros_like(audio)[-1:]``
    on the official [speakers, ...] audio: ONE zero speaker (``zero_speakers=2``: our option, both silenced)."""
    s = job.settings
    ref = job.source.frames_at([0])[0]
    latent = codec.encode(torch.cat([ref[None], torch.full((s.window - 1, *ref.shape), 0.5)]))
    mask = torch.zeros(4, *latent.shape[1:])
    mask[:, 0] = 1
    y = torch.cat([mask, latent])[None]
    clip_fea = clip.clip(ref)
    rows = (torch.arange(s.window)[:, None] + torch.arange(-2, 3)).clamp(0, s.window + 3 - 1)
    audio = torch.stack([torch.cat([e, e[-3:].flip(0)])[rows] for e in job.audio.speakers])[None]
    zero = torch.zeros_like(audio)[:, -zero_speakers:]
    h, w = ref.shape[:2]
    masks = latent_masks(job.speaker_layout, h, w, h // 8, w // 8) if job.speaker_layout is not None else None
    ctx = job.context[None]
    ctx_null = torch.nn.functional.pad(job.context_null, (0, 0, 0, 2))[None]
    z_mot = codec.encode(ref[None])
    t = timesteps(s.steps, s.shift)
    z = noise.clone()
    for i in range(s.steps):
        z[:, :1] = z_mot
        ti = t[i:i + 1]
        c = model(z[None], ti, ctx, clip_fea, y, audio, speaker_masks=masks)[0]
        if s.cfg == 1.0:
            u = model(z[None], ti, ctx, clip_fea, y, zero, speaker_masks=masks)[0]
            v = u + s.audio_cfg * (c - u)
        else:
            d = model(z[None], ti, ctx_null, clip_fea, y, audio, speaker_masks=masks)[0]
            u = model(z[None], ti, ctx_null, clip_fea, y, zero, speaker_masks=masks)[0]
            v = u + s.cfg * (c - d) + s.audio_cfg * (d - u)
        z = z + (-v) * ((t[i] - t[i + 1]) / 1000)
        z[:, :1] = z_mot
    return codec.decode(z)


@pytest.mark.parametrize("speakers,text_scale,choice", [(1, 5.0, "default"), (1, 1.0, "default"), (2, 5.0, "default"),
                                                       (2, 1.0, "official_exact"), (2, 5.0, NULL_AUDIO[1])])
def test_tiny_window_matches_official_formulas(speakers, text_scale, choice):
    """Default and official_exact: the official one-zero-speaker branch; the option: both speakers silenced."""
    model, cfg = _model()
    codec, clip = TinyCodec(), TinyClip()
    job = _job(cfg, speakers, 2, text_scale)
    if choice == "official_exact":
        job.settings.official_exact, job.settings.null_audio = True, NULL_AUDIO[1]  # the switch wins
    elif choice != "default":
        job.settings.null_audio = choice
    noise = torch.randn(16, 3, job.source.th // 8, job.source.tw // 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = _official(model, codec, clip, job, noise, zero_speakers=2 if choice == NULL_AUDIO[1] else 1)
        for batched in (False, True):
            job.settings.batch_branches = batched
            frames, _, _ = run(model, codec, clip, job, callbacks=Callbacks(noise=lambda k, shape: noise))
            golden.assert_close(frames, ref, rel=1e-5, what=f"batched={batched}")


@pytest.mark.parametrize("case", [dict(frames=40, source_fps=30.0, denoise=0.5, speakers=2),  # V2V SDEdit, 2 speakers
                                  dict(frames=1, denoise=1.0, speakers=1, face=True)])       # I2V + face image
def test_tiny_dit_end_to_end_over_several_windows(case):
    """The real DiT code with the golden tiny weights through 3+ windows: exact output length, finite frames."""
    model, cfg = _model()
    h, w = (8 * n for n in golden.case("a_dit_tiny")["cases"][0]["lat_hw"])
    gen = torch.Generator().manual_seed(4)
    n = 30
    audio = audio_embeds([n] * case["speakers"], layers=12, dim=768)
    job = Job(context=torch.randn(7, cfg.text_dim, generator=gen), context_null=torch.randn(5, cfg.text_dim, generator=gen),
              audio=audio, source=Source(video(case["frames"], h, w), case.get("source_fps", 25.0), 25.0, h, w),
              settings=Settings(steps=2, shift=5.0, cfg=5.0, audio_cfg=4.0, window=9, motion=5, denoise=case["denoise"]),
              speaker_layout=default_layout(h, w) if case["speakers"] == 2 else None,
              face=1 - video(1, h, w)[0] if case.get("face") else None)
    with torch.no_grad():
        frames, wav, fps = run(model, TinyCodec(), TinyClip(), job)
    assert frames.shape == (n, h, w, 3) and torch.isfinite(frames).all()
    assert wav["waveform"].shape[-1] == round(n / fps * wav["sample_rate"])
