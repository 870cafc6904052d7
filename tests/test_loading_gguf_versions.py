"""GGUF files read with every gguf release we declare (requirements: gguf>=0.10): nothing newer than
0.10's reader API is used. ``ReaderField.contents()`` (gguf >= 0.16 only) is removed here to prove it;
CI also runs this file and the GGUF loading tests under the oldest declared gguf (README, Tests)."""
import gguf
import numpy as np
import pytest
import torch

from infinitetalk_lipsync.pipeline.loading.reader import open_checkpoint


def _write(path):
    w = gguf.GGUFWriter(path=None, arch="wan")
    w.add_string("general.name", "tiny wan")
    w.add_uint32("general.file_type", 7)
    w.add_float32("test.scale", 0.5)
    w.add_array("test.list", [3, 4, 5])
    w.add_array("test.names", ["a", "bc"])
    w.add_array("comfy.gguf.orig_shape.blocks.0.modulation", [1, 6, 8])
    w.add_tensor("blocks.0.modulation", np.arange(48, dtype=np.float32).reshape(6, 8))
    w.add_tensor("blocks.0.ffn.0.weight", np.ones((4, 32), dtype=np.float16))
    w.write_header_to_file(path=str(path))
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("has_contents", [True, False])
def test_reader_uses_only_the_old_field_api(tmp_path, monkeypatch, has_contents):
    if not has_contents:
        monkeypatch.delattr(gguf.gguf_reader.ReaderField, "contents", raising=False)
    _write(tmp_path / "tiny.gguf")
    ck = open_checkpoint(tmp_path / "tiny.gguf")
    assert ck.metadata["general.name"] == "tiny wan" and ck.metadata["general.file_type"] == 7
    assert ck.metadata["test.scale"] == 0.5 and ck.metadata["test.list"] == [3, 4, 5]
    assert ck.metadata["test.names"] == ["a", "bc"]
    assert ck.shape("blocks.0.modulation") == (1, 6, 8)  # ComfyUI-GGUF's orig_shape field
    assert torch.equal(ck.get("blocks.0.modulation"), torch.arange(48.0).reshape(1, 6, 8))
    assert ck.get("blocks.0.ffn.0.weight").dtype == torch.float16


def test_too_old_gguf_is_named_with_the_fix(tmp_path, monkeypatch):
    import importlib.metadata

    from infinitetalk_lipsync.pipeline.loading import CheckpointError

    _write(tmp_path / "tiny.gguf")
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.10.0" if name == "gguf" else real(name))
    with pytest.raises(CheckpointError, match=r"gguf package 0\.10\.0 is too old(.|\n)*pip install -U gguf"):
        open_checkpoint(tmp_path / "tiny.gguf")
