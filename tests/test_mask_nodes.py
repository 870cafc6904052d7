"""The mask nodes run outside ComfyUI (host fallbacks): face mask -> crop -> paste, composite, SAM2 loader."""
import pytest
import torch

from infinitetalk_lipsync.nodes.mask import (InfiniteTalkComposite, InfiniteTalkFaceCrop, InfiniteTalkFaceMask,
                                             InfiniteTalkFacePaste, InfiniteTalkSAM2Loader)
from infinitetalk_lipsync.pipeline.mask.regions import dilate

skimage_data = pytest.importorskip("skimage.data")


def _video(frames=3):
    image = torch.from_numpy(skimage_data.astronaut()[::2, ::2].copy()).float() / 255  # 256x256
    return torch.stack([torch.roll(image, t, dims=1) for t in range(frames)])


def test_face_mask_crop_paste_chain_keeps_background():
    video = _video()
    out = InfiniteTalkFaceMask().run(video, "lower_face", 4, 3, 5, box="88,34,136,82")
    (mask,) = out["result"]
    assert mask.shape == (3, 256, 256) and "ellipse" in out["ui"]["text"][0]
    crops, info, crop_mask = InfiniteTalkFaceCrop().run(video, 128, 128, 0.6, 0, "lower_face", 5, mask=mask)
    assert crops.shape == (3, 128, 128, 3) and crop_mask.shape == (3, 128, 128)
    assert float(crop_mask.max()) > 0.9
    generated = 1 - crops  # stand-in for the sampler
    (pasted,) = InfiniteTalkFacePaste().run(generated, info, video, 6, "lab", 0, mask=mask)
    outside = dilate(mask, 6) == 0
    assert torch.equal(pasted[outside], video[outside])
    assert not torch.equal(pasted, video)


def test_face_crop_detects_the_face_itself():
    pytest.importorskip("cv2")
    video = _video(2)
    crops, info, _ = InfiniteTalkFaceCrop().run(video, 64, 96, 0.5, 0, "face", 5)
    x0, y0, x1, y1 = info.rects[0].tolist()
    assert crops.shape == (2, 96, 64, 3)
    assert x0 <= 90 and x1 >= 135 and y0 <= 35 and y1 >= 80  # the astronaut's face (half size) is inside


def test_composite_node():
    video = _video(2)
    mask = torch.zeros(1, 256, 256)
    mask[0, 100:150, 90:140] = 1
    (out,) = InfiniteTalkComposite().run(torch.zeros(2, 128, 128, 3), video, mask, 5, "none", 2)
    outside = dilate(mask, 5).expand(2, -1, -1) == 0
    assert torch.equal(out[outside], video[outside])
    assert float(out[:, 125, 115].max()) == 0.0


def test_sam2_loader_reports_missing_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        InfiniteTalkSAM2Loader().load("no_such_sam2.safetensors", "auto")


@pytest.mark.parametrize("box, match", [("300,10,400,80", "entirely outside the 256x256 frame"),
                                        ("-90,-50,-10,-5", "entirely outside"),
                                        ("nan,10,100,80", "finite numbers"), ("10,10,inf,80", "finite numbers")])
def test_face_box_outside_the_frame_or_nan_is_refused(box, match):
    """Such a box used to give an all-zero mask and a paste that changed nothing."""
    video = _video(2)
    with pytest.raises(ValueError, match=match):
        InfiniteTalkFaceMask().run(video, "face", 4, 3, 5, box=box)
    with pytest.raises(ValueError, match=f"box: (.|\\n)*{match}"):
        InfiniteTalkFaceCrop().run(video, 128, 128, 0.6, 0, "face", 5, box=box)
    InfiniteTalkFaceMask().run(video, "face", 4, 3, 5, box="200,200,300,300")  # partly inside: fine


def test_mask_of_another_size_is_reported_on_the_node(monkeypatch):
    from infinitetalk_lipsync.nodes import mask as mask_nodes

    shown = []
    monkeypatch.setattr(mask_nodes.host, "show_text", lambda node, text: shown.append(text))
    video = _video(2)  # 256x256
    small = torch.zeros(1, 128, 64)
    small[:, 40:80, 20:44] = 1
    InfiniteTalkComposite().run(video, video, small, 4, "none", 0)
    assert shown and "mask is 64x128 but the frames are 256x256" in shown[-1] and "STRETCHED" in shown[-1]
    shown.clear()
    InfiniteTalkComposite().run(video, video, torch.zeros(1, 128, 128), 4, "none", 0)
    assert shown and "resized" in shown[-1] and "STRETCHED" not in shown[-1]  # same aspect: only resized
    shown.clear()
    InfiniteTalkComposite().run(video, video, torch.zeros(1, 256, 256), 4, "none", 0)
    assert not shown
    out = InfiniteTalkFaceMask().run(video, "face", 4, 3, 5, mask=small)
    assert "mask is 64x128" in out["ui"]["text"][0]
    InfiniteTalkFaceCrop().run(video, 128, 128, 0.6, 0, "face", 5, mask=small)
    assert "mask is 64x128" in shown[-1]
