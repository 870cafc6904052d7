"""Compositor, colour matching, crop -> paste: nothing outside the mask changes."""
import pytest
import torch

from infinitetalk_lipsync.pipeline.color import lab2rgb, rgb2lab
from infinitetalk_lipsync.pipeline.mask.composite import composite, resize_frames
from infinitetalk_lipsync.pipeline.mask.crop import crop_frames, paste_frames, plan_crop
from infinitetalk_lipsync.pipeline.mask.regions import dilate, ellipse_masks, feather, temporal_smooth_

skimage_data = pytest.importorskip("skimage.data")


def _video(frames=3, size=160):
    image = torch.from_numpy(skimage_data.astronaut()).float() / 255
    image = resize_frames(image[None], size, size)[0]
    return torch.stack([torch.roll(image, 2 * t, dims=1) for t in range(frames)])


def _mask(frames, size, box=(50, 40, 110, 120)):
    return ellipse_masks(torch.tensor([box], dtype=torch.float32).expand(frames, 4), size, size, "face")


@pytest.mark.parametrize("mode", ["none", "lab", "histogram"])
def test_outside_mask_and_feather_is_bit_identical(mode):
    source = _video()
    generated = torch.rand_like(source)
    mask = _mask(3, 160)
    radius = 6
    out = composite(generated, source, mask, feather_radius=radius, colour_match=mode)
    outside = dilate(mask, radius) == 0
    assert torch.equal(out[outside], source[outside])
    assert not torch.equal(out, source)
    assert bool(((out >= 0) & (out <= 1)).all())


def test_colour_shift_inside_mask_is_corrected():
    source = _video()
    mask = _mask(3, 160)
    shifted = (source + torch.tensor([0.06, -0.04, 0.03])).clamp(0, 1)
    inside = mask > 0.5
    before = (shifted[inside] - source[inside]).mean(dim=0).abs().max()
    out = composite(shifted, source, mask, feather_radius=4, colour_match="lab")
    after = (out[inside] - source[inside]).mean(dim=0).abs().max()
    assert before > 0.03
    assert after <= 2 / 255, after
    hist = composite(shifted, source, mask, feather_radius=4, colour_match="histogram")
    assert (hist[inside] - source[inside]).mean(dim=0).abs().max() <= 2 / 255


def test_lab_round_trip():
    rgb = torch.rand(1000, 3)
    assert torch.allclose(lab2rgb(rgb2lab(rgb)), rgb, atol=1e-4)


def test_mask_colour_match_uses_the_one_lab_conversion(monkeypatch):
    """One sRGB <-> Lab conversion in the pack (pipeline.color): the compositor asks it, has none of its own."""
    from infinitetalk_lipsync.pipeline import color
    from infinitetalk_lipsync.pipeline.mask import colour

    assert not any(hasattr(colour, name) for name in ("rgb_to_lab", "lab_to_rgb", "_RGB2XYZ", "_D65"))
    calls = []
    real = color.rgb2lab
    monkeypatch.setattr(color, "rgb2lab", lambda x: calls.append(1) or real(x))
    source = _video(2)
    composite((source + 0.05).clamp(0, 1), source, _mask(2, 160), feather_radius=4, colour_match="lab")
    assert calls


def test_feather_reaches_exactly_radius():
    m = torch.zeros(1, 41, 41)
    m[0, 20, 20] = 1
    f = feather(dilate(m, 5), 4)
    assert f[0, 20, 20 + 5 + 4] > 0 and f[0, 20, 20 + 5 + 5] == 0


def test_temporal_smoothing_removes_flicker():
    masks = torch.zeros(20, 8, 8)
    masks[:, 2:6, 2:6] = 1
    masks[::2, 0, 0] = 1  # a pixel flickering on every other frame
    expected = torch.stack([masks[[min(max(s, 0), 19) for s in range(t - 2, t + 3)]].mean(dim=0) for t in range(20)])
    smooth = temporal_smooth_(masks.clone(), 5)
    assert torch.allclose(smooth, expected, atol=1e-6)
    assert smooth[2:-2, 0, 0].std() < 0.15 and torch.equal(smooth[:, 3, 3], torch.ones(20))


def test_crop_plan_is_stable_aligned_and_inside():
    boxes = torch.tensor([[100.0, 80, 180, 170], [110, 85, 190, 175], [300, 90, 380, 180]])
    info = plan_crop(boxes, 360, 640, 256, 384, padding=0.5, window=2)
    r = info.rects
    assert torch.equal(r[0], r[1]) and not torch.equal(r[1], r[2])
    w, h = r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]
    assert bool((w % 16 == 0).all() and (h % 16 == 0).all())
    assert bool((r[:, 0] >= 0).all() and (r[:, 2] <= 640).all() and (r[:, 1] >= 0).all() and (r[:, 3] <= 360).all())
    for t in range(3):  # each face box is inside its rectangle
        assert r[t, 0] <= boxes[t, 0] and r[t, 2] >= boxes[t, 2] and r[t, 1] <= boxes[t, 1] and r[t, 3] >= boxes[t, 3]
    with pytest.raises(ValueError, match="multiples of 16"):
        plan_crop(boxes, 360, 640, 250, 384)


def test_crop_paste_round_trip():
    source = _video(3, 160)
    boxes = torch.tensor([[60.0, 50, 100, 95]]).expand(3, 4)
    info = plan_crop(boxes, 160, 160, 96, 96, padding=0.3)
    crops = crop_frames(source, info)
    assert crops.shape == (3, 96, 96, 3)
    radius = 4
    out = paste_frames(crops, source, info, feather_radius=radius, colour_match="none")
    mask = ellipse_masks(boxes, 160, 160, "face")
    outside = dilate(mask, radius) == 0
    assert torch.equal(out[outside], source[outside])
    # Inside: only the resize round trip's error (same resampling done directly).
    x0, y0, x1, y1 = (int(v) for v in info.rects[0])
    direct = resize_frames(resize_frames(source[:, y0:y1, x0:x1], 96, 96), y1 - y0, x1 - x0)
    inside = (out[:, y0:y1, x0:x1] - source[:, y0:y1, x0:x1]).abs()
    assert float(inside.max()) <= float((direct - source[:, y0:y1, x0:x1]).abs().max()) + 1e-6
    assert float(inside.mean()) < 0.02


def test_paste_with_full_mask_and_shorter_generation():
    source = _video(4, 160)
    boxes = torch.tensor([[60.0, 50, 100, 95]]).expand(4, 4)
    info = plan_crop(boxes, 160, 160, 64, 64)
    mask = _mask(1, 160, (62, 55, 98, 92))
    out = paste_frames(torch.zeros(2, 64, 64, 3), source, info, masks=mask, feather_radius=2, colour_match="none")
    assert out.shape == (2, 160, 160, 3)
    outside = dilate(mask, 2).expand(2, -1, -1) == 0
    assert torch.equal(out[outside], source[:2][outside])
    assert float(out[0, 73, 80].max()) == 0.0  # the generated (black) face is in
    with pytest.raises(ValueError, match="same video"):
        paste_frames(torch.zeros(2, 64, 64, 3), source[:, :100], info)


def test_colour_correction_is_steady_and_validated():
    from infinitetalk_lipsync.pipeline.mask.colour import ColourMatcher
    with pytest.raises(ValueError, match="none, lab, histogram"):
        ColourMatcher("rgb")
    source = _video(6)
    mask = _mask(6, 160)
    shifted = (source + 0.05).clamp(0, 1)
    # One frame's band is corrupted (e.g. a hand passing): the correction of that frame moves only partly.
    shifted[3, 40:60] = 1.0
    out = composite(shifted, source, mask, feather_radius=4, colour_match="lab")
    inside = (mask[0] > 0.5) & (torch.arange(160)[:, None] >= 60)
    errors = torch.stack([(out[t][inside] - source[t][inside]).mean(dim=0).abs().max() for t in range(6)])
    assert float(errors[:3].max()) <= 2 / 255
    assert float(errors[3]) < float((shifted[3][inside] - source[3][inside]).mean(dim=0).abs().max())
