"""Each deliberate difference from the official code next to its official counterpart, and ``official_exact``:
two-speaker no-audio guidance, colour-correction reference and method, resizing, source-frame lookup."""
import math

import numpy as np
import pytest
import torch

import golden
from dit_helpers import case_for, shared_tiny_model
from codec_standins import TinyClip, TinyCodec
from infinitetalk_lipsync.pipeline.color import COLOUR_METHODS, colour_target, match_and_blend_colors, rgb2lab
from infinitetalk_lipsync.pipeline.sampler.branches import NULL_AUDIO, WindowInputs, predict
from infinitetalk_lipsync.pipeline.sampler.faithful import COLOUR_REFERENCES, OFFICIAL, Choices, active_choices, describe
from infinitetalk_lipsync.pipeline.sampler.loop import Job, Settings, make_plan, sample
from infinitetalk_lipsync.pipeline.sampler.source import Source
from sampler_fakes import FakeDiT, audio_embeds, video

H = W = 16


# -- two speakers: the no-audio branch ------------------------------------------------------------------------

def _case2_inputs(null_audio):
    """The golden DiT drop-audio case (one zero speaker) is the official no-audio branch of a 2-speaker clip. Give the window 2-speaker audio."""
    g, name = golden.tensors("dit_tiny_cases.safetensors"), case_for("zero")
    c = {k[len(name) + 1:]: v for k, v in g.items() if k.startswith(name + ".")}
    frames = c["audio"].shape[1]
    audio = torch.randn(1, 2, frames, *c["audio"].shape[2:], generator=torch.Generator().manual_seed(0))
    inputs = WindowInputs(context=c["context"][None], context_null=c["context"][None],
                          clip_fea=g["clip_fea"], y=c["y"], audio=audio,
                          speaker_masks=c["ref_target_masks"], null_audio=null_audio)
    return c, inputs


@pytest.mark.parametrize("batched", [False, True])
def test_official_no_audio_branch_is_one_zero_speaker_golden(batched):
    c, inputs = _case2_inputs(NULL_AUDIO[0])
    model = shared_tiny_model()
    with torch.no_grad():
        out = predict(model, c["x"], c["t"], inputs, ("cond", "drop_audio"), batched)
    golden.assert_close(out["drop_audio"], c["out"][0], what=f"drop_audio batched={batched}")
    assert (out["cond"] - out["drop_audio"]).abs().max() > 1e-3


def test_our_no_audio_branch_silences_both_speakers_and_differs():
    c, inputs = _case2_inputs(NULL_AUDIO[1])
    assert inputs.zero_audio().shape == inputs.audio.shape and not inputs.zero_audio().any()
    with torch.no_grad():
        out = predict(shared_tiny_model(), c["x"], c["t"], inputs, ("drop_audio",), False)
    assert (out["drop_audio"] - c["out"][0]).abs().max() > 1e-3  # the 2-speaker (L-RoPE) path


def test_one_speaker_no_audio_branch_is_the_same_either_way():
    audio = torch.randn(1, 1, 5, 5, 2, 4)
    for choice in NULL_AUDIO:
        inputs = WindowInputs(torch.zeros(1, 3, 8), torch.zeros(1, 3, 8), torch.zeros(1, 257, 8), torch.zeros(1, 20, 2, 2, 2),
                              audio, null_audio=choice)
        assert inputs.zero_audio().shape == audio.shape


# -- audio_scale ----------------------------------------------------------------------------------------------

def test_audio_scale_weights_the_audio_cross_attention():
    model = shared_tiny_model()
    c, one = golden.tensors("dit_tiny_cases.safetensors"), case_for("one")
    args = [c[f"{one}.x"][None], c[f"{one}.t"], c[f"{one}.context"][None], c["clip_fea"], c[f"{one}.y"]]
    audio = c[f"{one}.audio"][None]
    with torch.no_grad():
        default = model(*args, audio)
        golden.assert_close(default, c[f"{one}.out"], what="audio_scale 1 = the trained model")
        assert torch.equal(model(*args, audio, audio_scale=1.0), default)
        muted = [model(*args, a, audio_scale=0.0) for a in (audio, torch.randn_like(audio))]
        torch.testing.assert_close(muted[0], muted[1], atol=1e-6, rtol=0)  # no audio path left
        assert (model(*args, audio, audio_scale=2.0) - default).abs().max() > 1e-3


def test_audio_scale_reaches_every_branch():
    model = FakeDiT()
    inputs = WindowInputs(torch.ones(1, 3, 8), torch.ones(1, 3, 8), torch.zeros(1, 257, 8), torch.zeros(1, 20, 2, 2, 2),
                          torch.ones(1, 1, 5, 5, 2, 4), audio_scale=0.5)
    x, t = torch.zeros(16, 2, 2, 2), torch.tensor([500.0])
    half = predict(model, x, t, inputs, ("cond",), False)["cond"]
    inputs.audio_scale = 1.0
    full = predict(model, x, t, inputs, ("cond",), False)["cond"]
    base = full - (1.0 + 0.05)  # FakeDiT's audio term for all-ones audio of one speaker
    torch.testing.assert_close(half, base + 0.5 * (1.0 + 0.05))


# -- official_exact ---------------------------------------------------------------------------------------------

def test_official_exact_sets_every_choice_to_the_official_one():
    ours = Settings(null_audio=NULL_AUDIO[1], colour_reference=COLOUR_REFERENCES[2], colour_method=COLOUR_METHODS[2])
    assert active_choices(ours) == Choices(NULL_AUDIO[1], COLOUR_REFERENCES[2], COLOUR_METHODS[2])
    ours.official_exact = True
    assert active_choices(ours) == OFFICIAL
    assert OFFICIAL.null_audio == NULL_AUDIO[0] and OFFICIAL.colour_reference == COLOUR_REFERENCES[0]
    text = describe(ours, speakers=2, is_image=False)
    assert "official_exact ON" in text and NULL_AUDIO[0] in text and COLOUR_REFERENCES[0] in text
    assert "(official:" not in text
    ours.official_exact, ours.audio_scale = False, 1.5
    text = describe(ours, speakers=2, is_image=False)
    assert f"{NULL_AUDIO[1]} (official: {NULL_AUDIO[0]})" in text
    assert f"{COLOUR_REFERENCES[2]} (official: {COLOUR_REFERENCES[0]})" in text


def test_unknown_choice_is_a_clear_error():
    with pytest.raises(ValueError, match="colour_reference"):
        active_choices(Settings(colour_reference="last frame"))


# -- colour correction in the loop ---------------------------------------------------------------------------

class _SpyCodec(TinyCodec):
    def __init__(self):
        super().__init__()
        self.decoded = []

    def decode(self, latent):
        out = super().decode(latent)
        self.decoded.append(out.clone())
        return out


def _job(frames=60, **settings):
    base = dict(steps=2, shift=5.0, cfg=5.0, audio_cfg=4.0, window=17, motion=5, seed=3, colour_strength=0.7)
    base.update(settings)
    gen = torch.Generator().manual_seed(5)
    src = video(frames)
    src = src * torch.linspace(0.6, 1.0, frames).view(-1, 1, 1, 1)  # lighting that changes through the source
    return Job(context=torch.randn(7, 4096, generator=gen), context_null=torch.randn(5, 4096, generator=gen),
               audio=audio_embeds([50]), source=Source(src, 25.0, 25.0, H, W), settings=Settings(**base))


def _official_colour(raw, reference, strength):
    """The official step: match_and_blend_colors on [-1,1] [3,T,H,W] (the golden-tested port) -> 0..1 [T,H,W,3]."""
    out = match_and_blend_colors(raw.permute(3, 0, 1, 2) * 2 - 1, reference.permute(2, 0, 1) * 2 - 1, strength)
    return ((out + 1) / 2).permute(1, 2, 3, 0)


@pytest.mark.parametrize("settings", [dict(official_exact=True),
                                      dict(colour_reference=COLOUR_REFERENCES[0]),
                                      dict(colour_reference=COLOUR_REFERENCES[1]),
                                      dict(colour_reference=COLOUR_REFERENCES[2])])
def test_colour_reference_choices_follow_their_rules(settings):
    job = _job(**settings)
    codec = _SpyCodec()
    results = list(sample(FakeDiT(), codec, TinyClip(), job))
    plan, src, s = make_plan(job), job.source, job.settings
    first = src.frames_at([0])[0]
    refs = [src.frames_at([w.start])[0] for w in plan.windows]
    for w, raw, result in zip(plan.windows, codec.decoded, results):
        if active_choices(s).colour_reference == COLOUR_REFERENCES[0]:  # official: the first reference frame
            expected = _official_colour(raw, first, s.colour_strength)
        elif s.colour_reference == COLOUR_REFERENCES[1]:
            expected = _official_colour(raw, refs[w.index], s.colour_strength)
        else:  # global anchor: Lab mean/std pooled over every window's keyframe (distinct source frames)
            distinct = {src.index(v.start): r for v, r in zip(plan.windows, refs)}
            lab = rgb2lab(torch.stack(list(distinct.values())).reshape(-1, 3)).double()
            expected = _lab_to(raw, lab.mean(0), lab.std(0, unbiased=False), s.colour_strength)
        torch.testing.assert_close(result.frames, expected[w.keep_start:w.keep_stop], atol=2e-5, rtol=0)


def _lab_to(raw, mean, std, strength):
    """The official per-frame Lab mean/std transfer towards explicit target statistics (no flat frames here)."""
    from infinitetalk_lipsync.pipeline.color import lab2rgb
    lab = rgb2lab(raw.clamp(0, 1)).double()
    m, sd = lab.mean(dim=(1, 2), keepdim=True), lab.std(dim=(1, 2), unbiased=False, keepdim=True)
    matched = lab2rgb(((lab - m) * (std / sd) + mean).float())
    return (1 - strength) * raw.clamp(0, 1) + strength * matched


def test_i2v_colour_reference_is_the_same_either_way():
    outs = []
    for ref in COLOUR_REFERENCES:
        job = _job(frames=1, colour_reference=ref)
        outs.append(torch.cat([r.frames for r in sample(FakeDiT(), TinyCodec(), TinyClip(), job)]))
    for other in outs[1:]:
        torch.testing.assert_close(other, outs[0], atol=1e-6, rtol=0)


def test_official_lab_method_reproduces_the_golden_colour_correction():
    g = golden.tensors("color_correction.safetensors")
    src, ref = g["source"][0], g["reference"][0, :, 0]
    flat = [t for t in range(src.shape[1]) if bool((src[:, t].flatten(1).std(dim=1) == 0).all())]
    keep = [t for t in range(src.shape[1]) if t not in flat]  # see test_color: the flat frame is ours on purpose
    target = colour_target(((ref + 1) / 2).clamp(0, 1).permute(1, 2, 0), OFFICIAL.colour_method)
    for name in (k for k in g if k.startswith("out_strength")):
        strength = float(name[len("out_strength"):])
        out = target.transfer(((src + 1) / 2).permute(1, 2, 3, 0), strength) * 2 - 1
        golden.assert_close(out.permute(3, 0, 1, 2)[:, keep], g[name][0][:, keep], what=name)


# -- colour methods on synthetic drift --------------------------------------------------------------------------

def _drift(reference, steps=10):
    """A window sequence whose colour walks away from the reference: a growing cast, contrast and gamma shift."""
    cast = torch.tensor([0.02, -0.008, -0.015])
    return torch.stack([(reference ** (1 + 0.03 * k) * (1 - 0.02 * k) + cast * k).clamp(0, 1)
                        for k in range(steps)])


@pytest.mark.parametrize("method", COLOUR_METHODS)
def test_every_method_pulls_synthetic_drift_back_to_the_reference(method):
    gen = torch.Generator().manual_seed(1)
    reference = (torch.rand(24, 32, 3, generator=gen) * 0.6 + 0.2)
    drifted = _drift(reference)
    out = colour_target(reference, method).transfer(drifted, 1.0)
    ref_lab = rgb2lab(reference).mean(dim=(0, 1))
    before = (rgb2lab(drifted).mean(dim=(1, 2)) - ref_lab).abs().amax(-1)
    after = (rgb2lab(out).mean(dim=(1, 2)) - ref_lab).abs().amax(-1)
    assert before[-1] > 10 and after.max() < 1.0, (before, after)
    # drift does not grow with the window index after correction
    assert after[-1] <= after.max() and after.max() < before[1] + 1e-6
    if method == COLOUR_METHODS[1]:  # histogram: each channel's quantiles are the reference's (before clipping)
        q = torch.linspace(0.05, 0.95, 7)
        k = next(k for k in range(len(drifted)) if bool((drifted[k + 1] == 0).any()))
        for c in range(3):
            torch.testing.assert_close(torch.quantile(out[k, ..., c].flatten(), q),
                                       torch.quantile(reference[..., c].flatten(), q), atol=3e-3, rtol=0)
    if method == COLOUR_METHODS[2]:  # MKL: mean and full RGB covariance are the reference's
        for frame in out:
            x, r = frame.reshape(-1, 3).double(), reference.reshape(-1, 3).double()
            torch.testing.assert_close(x.mean(0), r.mean(0), atol=2e-3, rtol=0)
            torch.testing.assert_close(torch.cov(x.T, correction=0), torch.cov(r.T, correction=0), atol=2e-3, rtol=0)


@pytest.mark.parametrize("method", COLOUR_METHODS)
def test_global_anchor_pools_all_frames_at_flat_memory(method):
    gen = torch.Generator().manual_seed(2)
    frames = torch.rand(5, 12, 10, 3, generator=gen)
    pooled = colour_target(frames, method)
    one_by_one = colour_target(frames[0], method)
    for f in frames[1:]:
        one_by_one.add(f)
    probe = torch.rand(2, 12, 10, 3, generator=gen)
    torch.testing.assert_close(one_by_one.transfer(probe, 1.0), pooled.transfer(probe, 1.0), atol=1e-5, rtol=0)
    assert one_by_one.count == frames[..., 0].numel()


def test_strength_blends_like_the_official_code_for_every_method():
    gen = torch.Generator().manual_seed(3)
    reference, frames = torch.rand(8, 8, 3, generator=gen), torch.rand(2, 8, 8, 3, generator=gen)
    for method in COLOUR_METHODS:
        target = colour_target(reference, method)
        full = target.transfer(frames, 1.0)
        torch.testing.assert_close(target.transfer(frames, 0.25), 0.75 * frames + 0.25 * full, atol=1e-6, rtol=0)
        assert target.transfer(frames, 0.0) is frames


# -- resizing and source lookup -----------------------------------------------------------------------------------

def test_loop_reference_frames_are_the_official_pil_resize():
    """A source that needs resizing: the keyframe the window encodes is PIL bilinear on uint8 + centre crop."""
    pil = pytest.importorskip("PIL.Image")
    src = (video(1, 40, 27) * 255).round() / 255
    job = Job(context=torch.randn(7, 4096), context_null=torch.randn(5, 4096), audio=audio_embeds([9]),
              source=Source(src, 25.0, 25.0, H, W), settings=Settings(steps=1, window=9, motion=5, official_exact=True))
    encoded = []

    class Spy(TinyCodec):
        def encode(self, frames):
            encoded.append(frames.clone())
            return super().encode(frames)

    list(sample(FakeDiT(), Spy(), TinyClip(), job))
    h, w = src.shape[1:3]
    scale = max(H / h, W / w)
    nh, nw = math.ceil(scale * h), math.ceil(scale * w)
    top, left = int(round((nh - H) / 2.0)), int(round((nw - W) / 2.0))
    img = pil.fromarray((src[0] * 255).round().to(torch.uint8).numpy())
    ref = np.asarray(img.resize((nw, nh), resample=pil.BILINEAR))[top:top + H, left:left + W]
    assert torch.equal(encoded[0][0], torch.from_numpy(ref.astype(np.float32)) / 255)


def test_timestamp_lookup_equals_the_official_frame_number_at_25_fps_and_fixes_other_rates():
    at25 = Source(video(100), 25.0, 25.0, H, W)
    assert [at25.index(f) for f in range(100)] == list(range(100))  # official: frame f of the source
    at30 = Source(video(100), 30.0, 25.0, H, W)
    assert at30.index(72) == 86 != 72  # 2.88 s into a 30 fps video; the official code would show 2.4 s


# -- official_exact end to end: two speakers, colour correction and resizing over two windows ------------------

def _official_loop(model, codec, clip, frames_u8, emb, ctx, ctx_null, layout, noises, s, h, w):
    """The official streaming loop (spec §5, Appendix B) written out for 2 windows and 2 speakers: PIL bilinear
    cover-resize + torchvision centre crop of the uint8 source frame at each window's start; one zero speaker in
    the no-audio branches; colour matched to the FIRST reference frame; the next window's motion latents from the
    last m colour-corrected frames; end-of-audio flip padding before the last window."""
    from PIL import Image
    from infinitetalk_lipsync.pipeline.sampler.schedule import timesteps
    from infinitetalk_lipsync.pipeline.speaker_masks import latent_masks

    def cond_image(index):
        img = Image.fromarray(frames_u8[min(index, len(frames_u8) - 1)].numpy())
        scale = max(h / img.height, w / img.width)
        nh, nw = math.ceil(scale * img.height), math.ceil(scale * img.width)
        top, left = int(round((nh - h) / 2.0)), int(round((nw - w) / 2.0))
        out = np.asarray(img.resize((nw, nh), resample=Image.BILINEAR))[top:top + h, left:left + w]
        return torch.from_numpy(out.astype(np.float32)) / 255

    F_, m = s.window, s.motion
    L = emb[0].shape[0]
    t = timesteps(s.steps, s.shift)
    src_h, src_w = frames_u8.shape[1:3]
    masks = latent_masks(layout, h, w, h // 8, w // 8)
    ref0 = cond_image(0)
    out, motion, start, embs = [], None, 0, list(emb)
    for k in range(2):
        if start + F_ >= L:  # the last window: mirror-pad every speaker (miss = end - L + 3)
            miss = start + F_ - L + 3
            embs = [torch.cat([e, e[-miss:].flip(0)]) for e in emb]
        rows = (start + torch.arange(F_)[:, None] + torch.arange(-2, 3)).clamp(0, embs[0].shape[0] - 1)
        audio = torch.stack([e[rows] for e in embs])[None]
        zero = torch.zeros_like(audio)[:, -1:]
        ref = cond_image(start)
        lat = codec.encode(torch.cat([ref[None], torch.full((F_ - 1, h, w, 3), 0.5)]))
        mask = torch.zeros(4, *lat.shape[1:])
        mask[:, 0] = 1
        y, clip_fea = torch.cat([mask, lat])[None], clip.clip(ref)
        z_mot = codec.encode(ref[None] if motion is None else motion)
        n = z_mot.shape[1]
        z = noises[k].clone()
        for i in range(s.steps):
            z[:, :n] = z_mot
            ti = t[i:i + 1]
            c = model(z[None], ti, ctx, clip_fea, y, audio, speaker_masks=masks)[0]
            d = model(z[None], ti, ctx_null, clip_fea, y, audio, speaker_masks=masks)[0]
            u = model(z[None], ti, ctx_null, clip_fea, y, zero, speaker_masks=masks)[0]
            v = u + s.cfg * (c - d) + s.audio_cfg * (d - u)
            z = z + (-v) * ((t[i] - t[i + 1]) / 1000)
            z[:, :n] = z_mot
        video = codec.decode(z)
        video = _official_colour(video, ref0, s.colour_strength)
        out.append(video if k == 0 else video[m:])
        motion, start = video[-m:], start + F_ - m
    return torch.cat(out)[:L]


def test_official_exact_reproduces_the_official_loop_for_two_speakers_colour_and_resizing():
    from infinitetalk_lipsync.pipeline.speaker_masks import default_layout
    from infinitetalk_lipsync.pipeline.sampler.loop import Callbacks, run
    model = shared_tiny_model()
    cfg = model.config
    h, w = (8 * n for n in golden.case("a_dit_tiny")["cases"][0]["lat_hw"])
    frames_u8 = (video(20, 37, 70) * 255).round().to(torch.uint8)  # needs a cover-resize to h x w
    gen = torch.Generator().manual_seed(4)
    s = Settings(steps=2, shift=5.0, cfg=5.0, audio_cfg=4.0, window=9, motion=5, colour_strength=1.0, seed=0,
                 official_exact=True, null_audio=NULL_AUDIO[1], colour_reference=COLOUR_REFERENCES[1],
                 colour_method=COLOUR_METHODS[1])  # official_exact overrides the three
    audio = audio_embeds([13, 13], layers=12, dim=768)
    layout = default_layout(37, 70)
    job = Job(context=torch.randn(7, cfg.text_dim, generator=gen), context_null=torch.randn(7, cfg.text_dim, generator=gen),
              audio=audio, source=Source(frames_u8.float() / 255, 25.0, 25.0, h, w), settings=s,
              speaker_layout=layout)
    assert len(make_plan(job).windows) == 2
    noises = [torch.randn(16, 3, h // 8, w // 8, generator=gen) for _ in range(2)]
    codec, clip = TinyCodec(), TinyClip()
    with torch.no_grad():
        ref = _official_loop(model, codec, clip, frames_u8, audio.speakers, job.context[None], job.context_null[None],
                             layout, noises, s, h, w)
        ours, _, _ = run(model, codec, clip, job, callbacks=Callbacks(noise=lambda k, shape: noises[k]))
    golden.assert_close(ours, ref, rel=1e-5, what="official_exact loop")
