"""Buckets, cover-resize + centre crop, and two-speaker masks against the official layouts."""
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import golden
from infinitetalk_lipsync.pipeline.resolution import BUCKETS, _crop_box, bucket_size, resize_and_crop, target_size
from infinitetalk_lipsync.pipeline.speaker_masks import bbox_layout, default_layout, latent_masks


def test_speaker_masks_match_official_default_and_bbox_layouts():
    g = golden.tensors("window_plan.safetensors")
    plans = [p for p in golden.case("f_window_plan") if f"{p['name']}.ref_target_masks" in g]
    assert len(plans) >= 2 and any("bbox" in p for p in plans)
    for p in plans:
        ref = g[f"{p['name']}.ref_target_masks"]
        lat_h, lat_w = p["lat_hw"]
        desc = golden.manifest()["files"]["window_plan.safetensors"]["tensors"][f"{p['name']}.ref_target_masks"]["desc"]
        src_h, src_w = (int(v) for v in re.search(r"(\d+)x(\d+) \(HxW\)", desc).groups())
        th, tw = bucket_size(src_h, src_w, "480")
        assert (th // 8, tw // 8) == (lat_h, lat_w)
        person = bbox_layout(src_h, src_w, list(p["bbox"].values())) if "bbox" in p else default_layout(src_h, src_w)
        assert torch.equal(latent_masks(person, th, tw, lat_h, lat_w), ref), p["name"]


def test_bucket_choice_and_tables():
    assert bucket_size(640, 640, "480") == (640, 640)
    assert bucket_size(480, 832, "480") == (448, 896)
    assert bucket_size(1920, 1080, "720") == (1280, 704)
    for table in BUCKETS.values():
        assert all(h % 16 == 0 and w % 16 == 0 for h, w in table.values())
    assert target_size(100, 100, "480", width=320, height=192) == (192, 320)
    with pytest.raises(ValueError, match="multiples of 16"):
        target_size(100, 100, "480", width=330, height=192)
    with pytest.raises(ValueError, match="bucket"):
        bucket_size(100, 100, "1080")


@pytest.mark.parametrize("h,w,th,tw", [(120, 208, 112, 224), (1080, 1920, 448, 896), (97, 61, 640, 640)])
def test_cover_resize_is_the_official_pil_bilinear_exactly(h, w, th, tw):
    """Official ``resize_and_centercrop``: PIL ``resize((ceil(s*w), ceil(s*h)), BILINEAR)`` on the uint8 frame,
    then torchvision's centre crop (offsets ``int(round((new - target) / 2))``), then x/255."""
    pil = pytest.importorskip("PIL.Image")
    img = (np.random.RandomState(h).rand(h, w, 3) * 255).astype(np.uint8)
    scale = max(th / h, tw / w)
    nh, nw = math.ceil(scale * h), math.ceil(scale * w)
    top, left = int(round((nh - th) / 2.0)), int(round((nw - tw) / 2.0))
    ref = np.asarray(pil.fromarray(img).resize((nw, nh), resample=pil.BILINEAR))[top:top + th, left:left + tw]
    ours = resize_and_crop(torch.from_numpy(img)[None].float() / 255, th, tw)[0]
    assert torch.equal(ours, torch.from_numpy(ref.astype(np.float32)) / 255)
    assert torch.equal(resize_and_crop(torch.from_numpy(img)[None], th, tw)[0], ours)  # decoded uint8 frames as is


def test_torch_antialiased_bilinear_is_not_the_official_resampler():
    """Why the rule above exists: torch's antialiased bilinear (our earlier resampler) differs from PIL on uint8 by
    up to one level on a sizeable share of pixels."""
    pil = pytest.importorskip("PIL.Image")
    h, w, th, tw = 1080, 1920, 448, 896
    img = (np.random.RandomState(1).rand(h, w, 3) * 255).astype(np.uint8)
    scale = max(th / h, tw / w)
    nh, nw = math.ceil(scale * h), math.ceil(scale * w)
    ref = torch.from_numpy(np.asarray(pil.fromarray(img).resize((nw, nh), resample=pil.BILINEAR)).astype(np.float32))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    other = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True).round()
    differs = (other[0].permute(1, 2, 0) != ref).float().mean().item()
    assert differs > 0.01


def test_crop_offsets_use_half_to_even_rounding():
    assert _crop_box(100, 101, 100, 100)[2:] == (0, 0)   # round(0.5) == 0
    assert _crop_box(100, 103, 100, 100)[2:] == (0, 2)   # round(1.5) == 2
