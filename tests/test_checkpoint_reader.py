"""One checkpoint reader and one error type for every file the pack opens (DiT, LoRA, wav2vec2, SAM2)."""
import pytest
import torch
from safetensors.torch import save_file

import wav2vec_files as wf
from infinitetalk_lipsync.pipeline import audio
from infinitetalk_lipsync.pipeline.loading import CheckpointError
from infinitetalk_lipsync.pipeline.loading.reader import read_state_dict
from infinitetalk_lipsync.pipeline.mask import sam2_model


def test_every_loader_raises_the_one_checkpoint_error():
    assert audio.CheckpointError is CheckpointError
    assert not hasattr(sam2_model, "NotSam2CheckpointError")


def test_truncated_wav2vec2_file_gets_the_reader_message(tmp_path):
    path = wf.write_single_file(tmp_path / "wav2vec2-chinese-base_fp16.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"wav2vec2-chinese-base_fp16\.safetensors: file is truncated(.|\n)*fix:"):
        audio.load_wav2vec2(str(path))


def test_sam2_file_that_is_not_sam2(tmp_path):
    path = tmp_path / "sam2.1_hiera_tiny.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match=r"sam2\.1_hiera_tiny\.safetensors: not a SAM2 checkpoint(.|\n)*fix:"):
        sam2_model.read_state_dict(str(path))


def test_read_state_dict_unwraps_pickles_and_strips_comfy_prefixes(tmp_path):
    sd = {"a.weight": torch.randn(3, 4), "b.bias": torch.randn(3)}
    torch.save({"model": sd}, tmp_path / "meta.pt")
    save_file({f"model.diffusion_model.{k}": v for k, v in sd.items()}, str(tmp_path / "comfy.safetensors"))
    for name in ("meta.pt", "comfy.safetensors"):
        got = read_state_dict(tmp_path / name)
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd), name
