"""The tiny deterministic codec and CLIP stand-in follow the VAE/CLIP protocols' shapes and causality."""
import torch

from codec_standins import TinyClip, TinyCodec


def test_shapes_and_causality():
    codec = TinyCodec()
    frames = torch.rand(9, 32, 48, 3, generator=torch.Generator().manual_seed(0))
    z = codec.encode(frames)
    assert z.shape == (16, 3, 4, 6) and z.dtype == torch.float32
    assert codec.decode(z).shape == (9, 32, 48, 3)
    assert torch.equal(codec.encode(frames[:5]), z[:, :2])  # causal: later frames never change earlier latents
    assert torch.equal(codec.encode(frames[:1]), z[:, :1])


def test_roundtrip_of_flat_blocks_is_exact():
    codec = TinyCodec()
    flat = torch.rand(1, 4, 4, 3, generator=torch.Generator().manual_seed(1)).repeat_interleave(8, 1).repeat_interleave(8, 2)
    torch.testing.assert_close(codec.decode(codec.encode(flat)), flat, atol=1e-5, rtol=0)


def test_clip_shape_and_determinism():
    frame = torch.rand(40, 24, 3, generator=torch.Generator().manual_seed(2))
    a, b = TinyClip().clip(frame), TinyClip().clip(frame)
    assert a.shape == (1, 257, 1280) and torch.equal(a, b)


def test_clip_preprocessing_is_the_official_one():
    """Bicubic straight to 224x224 on the [-1,1] frame (no crop, no antialias, no clamp, no rounding), then CLIP norm."""
    from infinitetalk_lipsync.pipeline.codec import CLIP_MEAN, CLIP_STD, clip_pixels
    frame = torch.rand(90, 160, 3, generator=torch.Generator().manual_seed(3))
    x = frame.permute(2, 0, 1)[None] * 2 - 1
    x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False) * 0.5 + 0.5
    expected = (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    out = clip_pixels(frame)
    assert out.shape == (1, 3, 224, 224)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_latent_normalisation_roundtrip():
    from infinitetalk_lipsync.pipeline.codec import WAN21_MEAN, WAN21_STD, denormalize_latent, normalize_latent
    mu = torch.randn(16, 2, 3, 3, generator=torch.Generator().manual_seed(4))
    z = normalize_latent(mu)
    torch.testing.assert_close(z[:, 0, 0, 0], (mu[:, 0, 0, 0] - torch.tensor(WAN21_MEAN)) / torch.tensor(WAN21_STD))
    torch.testing.assert_close(denormalize_latent(z), mu, atol=1e-6, rtol=0)
