"""The sampler node outside ComfyUI, with ComfyUI-shaped stand-ins for VAE, CLIP vision and conditioning."""
from types import SimpleNamespace

import pytest
import torch

from infinitetalk_lipsync.nodes import NODE_CLASS_MAPPINGS
from infinitetalk_lipsync.nodes.adapters import ComfyVAE
from infinitetalk_lipsync.nodes.sampler import InfiniteTalkSampler
from codec_standins import TinyClip, TinyCodec
from infinitetalk_lipsync.pipeline.codec import denormalize_latent
from sampler_fakes import FakeDiT, audio_embeds, video


class CoreLikeVAE:
    """Core VAE interface: encode IMAGE [N,H,W,3] -> raw latent [1,16,t,h,w]; decode -> [1,T,H,W,3]."""

    def __init__(self):
        self.codec = TinyCodec()

    def encode(self, frames):
        return denormalize_latent(self.codec.encode(frames))[None]

    def decode(self, latent):
        from infinitetalk_lipsync.pipeline.codec import normalize_latent
        return self.codec.decode(normalize_latent(latent[0]))[None]


class CoreLikeClipVision:
    def __init__(self):
        self.patcher = SimpleNamespace(load_device="cpu")
        self.tiny = TinyClip()
        self.seen = []

    def model(self, pixel_values, intermediate_output):
        self.seen.append(tuple(pixel_values.shape))
        tokens = self.tiny.clip(pixel_values[0].permute(1, 2, 0).clamp(-3, 3))
        return (None, tokens, None, None)


def _cond(n, seed):
    return [[torch.randn(1, n, 4096, generator=torch.Generator().manual_seed(seed)), {}]]


def _inputs(**kw):
    base = dict(model=FakeDiT(), vae=CoreLikeVAE(), clip_vision=CoreLikeClipVision(), positive=_cond(512, 0),
                negative=_cond(512, 1), audio_embeds=audio_embeds([30]), source=video(40, 24, 40), source_fps=30.0,
                steps=2, shift=5.0, cfg=5.0, audio_cfg=4.0, denoise=1.0, solver="euler", seed=1, colour_correction=1.0,
                resolution="custom width/height", width=32, height=16, window=17, motion_frames=5)
    base.update(kw)
    return base


def test_registered_with_tooltips_everywhere():
    assert NODE_CLASS_MAPPINGS["InfiniteTalkSampler"] is InfiniteTalkSampler
    spec = InfiniteTalkSampler.INPUT_TYPES()
    for group in ("required", "optional"):
        for name, (_, opts) in spec[group].items():
            assert opts.get("tooltip"), name


def test_node_outputs_frames_audio_fps_for_create_video():
    out = InfiniteTalkSampler().sample(**_inputs())
    frames, audio, fps, video_out = out["result"]
    assert frames.shape == (30, 16, 32, 3) and fps == 25.0
    import av
    with av.open(video_out.get_stream_source()) as c:  # the streamed mp4: same frames, same audio span
        assert c.streams.video[0].frames == 30 and (c.streams.video[0].width, c.streams.video[0].height) == (32, 16)
    assert audio["waveform"].shape == (1, 1, round(30 / 25 * 16000)) and audio["sample_rate"] == 16000
    text = out["ui"]["text"][0]
    assert "32x16" in text and "window" in text


def test_two_speakers_with_masks_and_a_face_image():
    node = InfiniteTalkSampler()
    kw = _inputs(audio_embeds=audio_embeds([20, 20]))
    with pytest.raises(ValueError, match="mask_1"):
        node.sample(**kw, mask_1=torch.ones(1, 24, 40))
    left = torch.zeros(1, 24, 40)
    left[:, :, :20] = 1
    clip_vision = CoreLikeClipVision()
    out = node.sample(**_inputs(audio_embeds=audio_embeds([20, 20]), clip_vision=clip_vision), mask_1=left,
                      mask_2=1 - left, face_image=video(1, 50, 30))
    assert out["result"][0].shape[0] == 20
    assert set(clip_vision.seen) == {(1, 3, 224, 224)}


def test_bucket_choice_is_shown():
    """A 480 bucket frame is 640x640 for a square source: check the plan text on a tiny dry run (1 step)."""
    out = InfiniteTalkSampler().sample(**_inputs(resolution="480p bucket", width=0, height=0, source=video(1, 8, 8),
                                                 audio_embeds=audio_embeds([5]), steps=1, cfg=1.0, window=5,
                                                 motion_frames=1, colour_correction=0.0))
    assert out["result"][0].shape == (5, 640, 640, 3)
    assert "640x640" in out["ui"]["text"][0]


def test_clear_errors_before_sampling():
    model = FakeDiT()
    with pytest.raises(ValueError, match="multiples of 16"):
        InfiniteTalkSampler().sample(**_inputs(model=model, width=30))
    with pytest.raises(ValueError, match="denoise"):
        InfiniteTalkSampler().sample(**_inputs(model=model, source=video(1), denoise=0.5))
    with pytest.raises(ValueError, match="CONDITIONING|4096"):
        InfiniteTalkSampler().sample(**_inputs(model=model, positive=[[torch.zeros(1, 5, 768), {}]]))
    with pytest.raises(ValueError, match="window"):
        InfiniteTalkSampler().sample(**_inputs(model=model, window=18))
    assert model.calls == []


def test_lora_style_settings_warn():
    out = InfiniteTalkSampler().sample(**_inputs(steps=4))
    assert "WARNING" in out["ui"]["text"][0]
    out = InfiniteTalkSampler().sample(**_inputs(steps=4, cfg=1.0, audio_cfg=2.0))
    assert "WARNING" not in out["ui"]["text"][0]


def test_core_vae_adapter_normalises_like_the_official_wrapper():
    vae = CoreLikeVAE()
    frames = video(5, 16, 16)
    torch.testing.assert_close(ComfyVAE(vae).encode(frames), vae.codec.encode(frames), atol=1e-5, rtol=0)


def test_streamed_video_source_frames_only_when_connected_and_the_budget(tmp_path):
    """source_video (a VIDEO file) gives the same render as its frames as IMAGE; the IMAGE output is filled only
    when a node of the prompt reads it; the report names windows, forwards and memory before the first step."""
    from test_video_stream import _decode_all, _write_video
    from infinitetalk_lipsync.nodes import host
    from infinitetalk_lipsync.pipeline.sampler.budget import Budget
    path = tmp_path / "clip.mp4"
    _write_video(path, frames=40, fps=30, size=(24, 40))
    node = InfiniteTalkSampler()
    image = node.sample(**_inputs(source=_decode_all(path)))["result"]
    kw = _inputs(source=None, source_video=host.video_from_file(str(path)))
    streamed = node.sample(**kw)
    assert torch.equal(streamed["result"][0], image[0])
    text = streamed["ui"]["text"][0]
    assert "streamed" in text and "model forwards" in text and "host RAM added" in text
    unused = node.sample(**kw, unique_id="7", prompt={"8": {"inputs": {"video": ["7", 3]}}})
    assert unused["result"][0].shape[0] == 1 and "frames output" not in unused["ui"]["text"][0]
    with pytest.raises(ValueError, match="exactly one"):
        node.sample(**_inputs(source_video=host.video_from_file(str(path))))
    big = Budget(windows=1, forwards=2, frames=10, host_window_bytes=1, host_frames_bytes=2 ** 34, weight_bytes=0,
                 activation_bytes=2 ** 31)
    with pytest.raises(ValueError, match="disconnect the frames"):
        big.check(host_free=2 ** 33, device_free=None, batch_branches=False)
    with pytest.raises(ValueError, match="batch_branches off"):
        big.check(host_free=None, device_free=2 ** 30, batch_branches=True)


def test_continue_video_renders_the_rest_of_the_audio():
    node = InfiniteTalkSampler()
    first = node.sample(**_inputs(audio_embeds=audio_embeds([29])))["result"][3]  # windows end at 17, 29, 41...
    out = node.sample(**_inputs(audio_embeds=audio_embeds([50]), continue_video=first))
    frames, audio, _, video_out = out["result"]
    assert frames.shape[0] == 50 - 29 and audio["waveform"].shape[-1] == round(21 / 25 * 16000)
    with pytest.raises(ValueError, match="end of a window"):
        node.sample(**_inputs(audio_embeds=audio_embeds([50]), continue_video=node.sample(
            **_inputs(audio_embeds=audio_embeds([30])))["result"][3]))


def test_node_validates_and_plans_once(monkeypatch):
    """One validation and one plan per run: the node reports exactly the plan the loop runs."""
    from infinitetalk_lipsync.pipeline.sampler import loop

    calls = {"validate": 0, "make_plan": 0, "make_schedule": 0}
    for name in calls:
        real = getattr(loop, name)
        monkeypatch.setattr(loop, name, lambda *a, _real=real, _name=name, **k: calls.__setitem__(_name, calls[_name] + 1) or _real(*a, **k))
    InfiniteTalkSampler().sample(**_inputs())
    assert calls == {"validate": 1, "make_plan": 1, "make_schedule": 1}, calls


@pytest.mark.parametrize("width,height", [(0, 0), (0, 16), (330, 192)])
def test_custom_size_errors_never_suggest_zero(width, height):
    """In custom mode 0x0 is itself an error: the message must give a valid size, not 'set both to 0'."""
    with pytest.raises(ValueError, match="multiples of 16") as info:
        InfiniteTalkSampler().sample(**_inputs(width=width, height=height))
    assert "set both to 0" not in str(info.value) and "832x480" in str(info.value)


def test_node_reports_start_noise_and_warns_when_denoise_is_ineffective():
    out = InfiniteTalkSampler().sample(**_inputs(steps=1, denoise=0.5))
    text = out["ui"]["text"][0]
    assert "noise level 1.000" in text and "WARNING: denoise 0.5 has no effect with 1 step" in text
    text = InfiniteTalkSampler().sample(**_inputs(steps=2, denoise=0.5))["ui"]["text"][0]
    assert "WARNING: denoise 0.5 with 2 steps" in text and "almost no noise" in text


def test_speaker_mask_of_another_size_is_reported():
    m1, m2 = torch.zeros(1, 12, 10), torch.zeros(1, 12, 10)
    m1[:, :, :5], m2[:, :, 5:] = 1, 1
    out = InfiniteTalkSampler().sample(**_inputs(audio_embeds=audio_embeds([30, 30]), mask_1=m1, mask_2=m2))
    text = out["ui"]["text"][0]
    assert "mask_1 is 10x12 but the frames are 40x24" in text and "STRETCHED" in text
