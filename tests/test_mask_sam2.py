"""SAM2: real checkpoint key names -> transformers, loading Meta .pt / Kijai .safetensors, video masks."""
import sys

import pytest
import torch

pytest.importorskip("transformers.models.sam2_video")
from safetensors.torch import save_file  # noqa: E402
from transformers import Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoModel, Sam2VisionConfig  # noqa: E402

from infinitetalk_lipsync.pipeline.loading import CheckpointError  # noqa: E402
from infinitetalk_lipsync.pipeline.mask import sam2_keys, sam2_model, sam2_video  # noqa: E402
from infinitetalk_lipsync.pipeline.mask.face_mask import face_masks  # noqa: E402
from infinitetalk_lipsync.pipeline.mask.sam2_video import segment_face  # noqa: E402
from sam2_tiny import TINY_TRUNK, real_shapes, tiny_hf_state_dict, to_meta_keys  # noqa: E402


@pytest.fixture(autouse=True)
def _tiny_trunk(monkeypatch):
    for key, value in TINY_TRUNK.items():
        monkeypatch.setitem(sam2_keys.KNOWN_TRUNKS, key, value)


@pytest.fixture(scope="module")
def tiny_meta():
    return to_meta_keys(tiny_hf_state_dict())


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory, tiny_meta):
    folder = tmp_path_factory.mktemp("sam2")
    kijai = folder / "sam2.1_hiera_tiny-fp16.safetensors"
    save_file({k: v.contiguous().half() for k, v in tiny_meta.items()}, str(kijai))
    meta = folder / "sam2.1_hiera_tiny.pt"
    torch.save({"model": tiny_meta}, str(meta))
    return kijai, meta


@pytest.mark.parametrize("size", ["tiny", "small", "base_plus", "large"])
def test_real_checkpoint_keys_map_onto_sam2_video_model(size):
    shapes = real_shapes()[size]
    sd = sam2_keys.to_transformers_keys({k: torch.empty(v, device="meta") for k, v in shapes.items()})
    kw = sam2_keys.hf_config_kwargs(sd)
    assert kw["name"] == size
    assert kw["model"]["enable_occlusion_spatial_embedding"]  # SAM2.1
    config = Sam2VideoConfig(vision_config=Sam2VisionConfig(backbone_config=Sam2HieraDetConfig(**kw["backbone"]),
                                                            **kw["vision"]), **kw["model"])
    with torch.device("meta"):
        model = Sam2VideoModel(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected


def test_inverse_helper_matches_real_names():
    # The test's own Meta-layout writer must reproduce the real key lists exactly.
    for shapes in real_shapes().values():
        sd = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
        assert set(to_meta_keys(sam2_keys.to_transformers_keys(sd))) == set(sd)


def test_load_kijai_safetensors_and_meta_pt_give_the_same_model(tiny_files, tiny_meta):
    kijai, meta = tiny_files
    a = sam2_model.load_sam2(str(kijai))
    b = sam2_model.load_sam2(str(meta))
    assert a.name == b.name == "test-tiny" and a.image_size == 128
    ref = sam2_keys.to_transformers_keys(tiny_meta)
    sb = b.model.state_dict()
    for key, value in ref.items():
        assert torch.equal(sb[key], value.float()), key
        assert torch.equal(a.model.state_dict()[key], value.half().float()), key
    assert not any(t.is_meta for t in list(b.model.parameters()) + list(b.model.buffers()))


def test_bad_files_are_clear_errors(tmp_path, tiny_meta):
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="not a SAM2 checkpoint"):
        sam2_model.load_sam2(str(other))
    broken = tmp_path / "broken.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_meta.items() if "no_mem_embed" not in k}, str(broken))
    with pytest.raises(CheckpointError, match="missing"):
        sam2_model.load_sam2(str(broken))
    with pytest.raises(FileNotFoundError):
        sam2_model.load_sam2(str(tmp_path / "absent.pt"))
    odd = {k: v for k, v in tiny_meta.items()}
    odd["image_encoder.trunk.patch_embed.proj.weight"] = torch.zeros(24, 3, 7, 7)
    with pytest.raises(ValueError, match="not a known SAM2 size"):
        sam2_keys.hf_config_kwargs(sam2_keys.to_transformers_keys(odd))


def test_missing_transformers_names_the_install(monkeypatch, tiny_files):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(sam2_model.Sam2UnavailableError, match=r'pip install "transformers>=4.56"'):
        sam2_model.load_sam2(str(tiny_files[0]))


def _frames(count=5):
    image = torch.zeros(96, 128, 3)
    image[..., 2] = 0.3
    frames = []
    for t in range(count):
        f = image.clone()
        f[30:70, 40 + 2 * t:80 + 2 * t] = torch.tensor([0.9, 0.7, 0.6])  # a bright "face" moving right
        frames.append(f)
    return torch.stack(frames)


def test_video_propagation_on_cpu(tiny_files):
    sam = sam2_model.load_sam2(str(tiny_files[0]))
    frames = _frames(3)
    masks, present = segment_face(sam, frames, torch.tensor([40.0, 30, 80, 70]), points=[(60.0, 50.0, 1)])
    assert masks.shape == (3, 96, 128) and present.shape == (3,)
    assert set(torch.unique(masks).tolist()) <= {0.0, 1.0}


def test_long_videos_keep_only_the_memory_window():
    from types import SimpleNamespace

    from infinitetalk_lipsync.pipeline.mask.sam2_video import _forget_old
    outputs = {"cond_frame_outputs": {0: "prompt"}, "non_cond_frame_outputs": {t: t for t in range(1, 100)}}
    session = SimpleNamespace(output_dict_per_obj={0: outputs}, processed_frames={t: t for t in range(100)})
    _forget_old(session, 99, keep=17)
    assert sorted(outputs["non_cond_frame_outputs"]) == list(range(82, 100))
    assert sorted(session.processed_frames) == [0, 99] and outputs["cond_frame_outputs"] == {0: "prompt"}


def test_face_masks_with_sam2_and_fallback(tiny_files):
    sam = sam2_model.load_sam2(str(tiny_files[1]))
    frames = _frames(3)
    masks, boxes, report = face_masks(frames, sam=sam, box=(40, 30, 80, 70), region="lower_face", dilation=1,
                                      smoothing=1)
    assert masks.shape == (3, 96, 128)
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    assert bool((masks.sum(dim=(1, 2)) > 0).all())  # every frame has a mask (SAM2 or the box ellipse)
    # lower face: nothing above the (enlarged) lower-face ellipse of each frame's box, plus the dilation
    top = boxes[:, 1] + (0.80 - 0.42 * 1.15) * (boxes[:, 3] - boxes[:, 1]) - 1 - 1
    for t in range(3):
        assert float(masks[t, : int(top[t])].sum()) == 0.0
    assert "SAM2 test-tiny" in report


def test_face_masks_without_sam2_is_the_region_ellipse():
    frames = _frames(3)
    masks, boxes, report = face_masks(frames, box=(40, 30, 80, 70), region="face", dilation=0, smoothing=1)
    assert masks.shape == (3, 96, 128) and "ellipse" in report
    assert masks[0, 55, 60] == 1 and masks[0, 5, 5] == 0


@pytest.mark.parametrize("size", ["tiny", "small", "base_plus", "large"])
def test_random_model_of_each_size_has_the_real_layout(size):
    _, config = sam2_model.build_config(sam2_keys.size_layout(size))
    with torch.device("meta"):
        model = Sam2VideoModel(config)
    real = {k: torch.empty(v, device="meta") for k, v in real_shapes()[size].items()}
    expected = {k: tuple(v.shape) for k, v in sam2_keys.to_transformers_keys(real).items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_video_logits_match_meta_sam2(tmp_path):
    """Parity with Meta's own SAM2VideoPredictor (sam2 1.1.0) on the miniature model: same seeded weights
    saved in Meta's layout, same frames, box + click; the reference logits are in tests/data (see the
    file's metadata for how they were made)."""
    from safetensors.torch import load_file

    from sam2_tiny import SHAPES, parity_frames, seeded_meta_weights
    from golden import assert_close
    path = tmp_path / "sam2.1_hiera_parity.safetensors"
    save_file(seeded_meta_weights(), str(path))
    sam = sam2_model.load_sam2(str(path))
    frames, box, points = parity_frames()
    ref = load_file(str(SHAPES.parent / "sam2_parity_meta.safetensors"))["logits"]
    ours = torch.stack([logits for logits, _ in sam2_video.track_logits(sam, frames, box, points)])
    assert bool(((ref > 0).float().mean(dim=(1, 2)) > 0.02).all())  # a real mask on every frame
    # 2.3e-4 measured on logits up to 9.2 (op order differs: SDPA, rotary layout); 1e-4 relative bound.
    assert_close(ours, ref, 1e-4, "SAM2 video logits vs Meta")
    assert float(((ours > 0) != (ref > 0)).float().mean()) < 1e-3


def test_bf16_tracking_agrees_with_meta(tmp_path):
    """The GPU default (bf16 weights and session) runs through the same code and stays close."""
    from safetensors.torch import load_file

    from sam2_tiny import SHAPES, parity_frames, seeded_meta_weights
    path = tmp_path / "sam2.1_hiera_parity.safetensors"
    save_file(seeded_meta_weights(), str(path))
    sam = sam2_model.load_sam2(str(path), dtype=torch.bfloat16)
    frames, box, points = parity_frames()
    ref = load_file(str(SHAPES.parent / "sam2_parity_meta.safetensors"))["logits"]
    ours = torch.stack([logits for logits, _ in sam2_video.track_logits(sam, frames, box, points)])
    assert float(((ours > 0) != (ref > 0)).float().mean()) < 0.01  # 0.18 % of pixels measured
