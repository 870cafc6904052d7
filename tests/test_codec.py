"""The tiny deterministic codec and CLIP stand-in follow the VAE/CLIP protocols' shapes and causality."""
import torch

from infinitetalk_lipsync.pipeline.codec import TinyClip, TinyCodec


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
