"""Bad input -> one clear CheckpointError naming the file, what was found and the fix."""
import pickle

import pytest
import torch

import golden
import loading_files as lf
import loading_standin as standin
from infinitetalk_lipsync.pipeline.loading import CheckpointError, load_dit
from infinitetalk_lipsync.pipeline.loading.reader import open_checkpoint


CFG = golden.case("a_dit_tiny")["config"]


@pytest.fixture(scope="module")
def good(tmp_path_factory, ref):
    d = tmp_path_factory.mktemp("good")
    lf.write_float_pair(ref, d)
    return d


def load(ref, base, audio, **kw):
    return load_dit(base, audio, device="cpu", compute_dtype=torch.float32, num_heads=CFG["num_heads"],
                    model_builder=standin.builder(ref), **kw)


def expect(match, ref, base, audio, **kw):
    with pytest.raises(CheckpointError, match=match) as info:
        load(ref, base, audio, **kw)
    assert "fix:" in str(info.value)
    return str(info.value)


def test_truncated_safetensors(tmp_path, ref, good):
    data = (good / "base.safetensors").read_bytes()
    (tmp_path / "wan_cut.safetensors").write_bytes(data[: len(data) // 2])
    msg = expect(r"wan_cut.safetensors: file is truncated", ref, tmp_path / "wan_cut.safetensors",
                 good / "infinitetalk.safetensors")
    assert "download" in msg and "first offending keys" in msg
    (tmp_path / "tiny.safetensors").write_bytes(data[:5])
    expect("too short", ref, tmp_path / "tiny.safetensors", good / "infinitetalk.safetensors")
    (tmp_path / "hdr.safetensors").write_bytes(data[:200])
    expect("header length out of range|corrupt", ref, tmp_path / "hdr.safetensors", good / "infinitetalk.safetensors")


def test_garbage_gguf_header(tmp_path, ref, good):
    (tmp_path / "model-Q4_K.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 4)
    expect("model-Q4_K.gguf: not a readable GGUF file", ref, tmp_path / "model-Q4_K.gguf",
           good / "infinitetalk.safetensors")
    (tmp_path / "renamed.gguf").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="renamed.gguf"):
        open_checkpoint(tmp_path / "renamed.gguf")


def test_t2v_and_wan22_shaped_files(tmp_path, ref, good):
    base, _ = lf.split(ref)
    t2v = {k: v for k, v in base.items() if "img_emb" not in k and "_img" not in k}
    t2v["patch_embedding.weight"] = t2v["patch_embedding.weight"][:, :16].contiguous()
    lf.write_st(t2v, tmp_path / "wan2.1_t2v_14B_fp16.safetensors")
    msg = expect("wrong model family", ref, tmp_path / "wan2.1_t2v_14B_fp16.safetensors", good / "infinitetalk.safetensors")
    assert "text-to-video" in msg and "Wan 2.1 I2V 14B" in msg
    no_clip = {k: v for k, v in base.items() if "img_emb" not in k and "_img" not in k}
    lf.write_st(no_clip, tmp_path / "wan2.2_i2v_high_noise_14B.safetensors")
    assert "Wan 2.2 I2V" in expect("wrong model family", ref, tmp_path / "wan2.2_i2v_high_noise_14B.safetensors",
                                   good / "infinitetalk.safetensors")
    ti2v = dict(base)
    ti2v["patch_embedding.weight"] = torch.zeros(CFG["dim"], 48, 1, 2, 2)
    lf.write_st(ti2v, tmp_path / "wan2.2_ti2v_5B.safetensors")
    assert "TI2V 5B" in expect("wrong model family", ref, tmp_path / "wan2.2_ti2v_5B.safetensors",
                               good / "infinitetalk.safetensors")


def test_files_swapped(ref, good):
    msg = expect("InfiniteTalk audio adapter, not a Wan base model", ref, good / "infinitetalk.safetensors",
                 good / "infinitetalk.safetensors")
    assert "infinitetalk.safetensors" in msg
    expect("Wan base model, not the InfiniteTalk audio adapter", ref, good / "base.safetensors", good / "base.safetensors")
    expect("no InfiniteTalk file given", ref, good / "base.safetensors", None)


def test_lora_as_base(tmp_path, ref, good):
    lf.lora_file(lf.split(ref)[0], tmp_path / "lightx2v.safetensors")
    expect("this is a LoRA, not a base model", ref, tmp_path / "lightx2v.safetensors", good / "infinitetalk.safetensors")


def test_missing_and_misshapen_keys(tmp_path, ref, good):
    _, audio = lf.split(ref)
    last = f"blocks.{CFG['num_layers'] - 1}.audio_cross_attn"
    partial = {k: v for k, v in audio.items() if not k.startswith(last + ".")}
    lf.write_st(partial, tmp_path / "it_partial.safetensors")
    msg = expect("model tensors are missing", ref, good / "base.safetensors", tmp_path / "it_partial.safetensors")
    assert last in msg and "InfiniteTalk" in msg
    wrong = dict(audio)
    r = CFG["intermediate_dim"]
    wrong["audio_proj.proj2.weight"] = torch.zeros(r, r + 1)
    lf.write_st(wrong, tmp_path / "it_wrong.safetensors")
    assert f"audio_proj.proj2.weight ({r}, {r + 1})" in expect("shapes do not match", ref, good / "base.safetensors",
                                                       tmp_path / "it_wrong.safetensors")
    # an adapter for a model of another width: its kv projections (2*dim rows) are narrower
    other = {k: (v[:v.shape[0] // 4] if k.startswith("blocks.") and v.dim() >= 1 and v.shape[0] == 2 * CFG["dim"] else v)
             for k, v in audio.items()}
    lf.write_st(other, tmp_path / "it_other.safetensors")
    expect("does not fit this base model", ref, good / "base.safetensors", tmp_path / "it_other.safetensors")


def test_unsupported_comfy_quant_format(tmp_path, ref, good):
    base, _ = lf.split(ref)
    sd = lf.scaled_fp8(base, torch.float8_e4m3fn, comfy_quant=True)
    key = next(k for k in sd if k.endswith(".comfy_quant"))
    sd[key] = torch.tensor(list(b'{"format": "nvfp4"}'), dtype=torch.uint8)
    lf.write_st(sd, tmp_path / "wan_nvfp4.safetensors")
    expect("uses quantisation format 'nvfp4'", ref, tmp_path / "wan_nvfp4.safetensors", good / "infinitetalk.safetensors")


def test_pickle_needing_code_is_refused(tmp_path, ref, good):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))
    with open(tmp_path / "evil.pt", "wb") as f:
        torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": Evil()}, f)
    expect("refused for safety", ref, tmp_path / "evil.pt", good / "infinitetalk.safetensors")
    (tmp_path / "legacy.bin").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="legacy.bin"):
        open_checkpoint(tmp_path / "legacy.bin")


def test_missing_file_and_bad_options(tmp_path, ref, good):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load(ref, tmp_path / "nope.safetensors", good / "infinitetalk.safetensors")
    with pytest.raises(ValueError, match="fp8_mode"):
        load(ref, good / "base.safetensors", good / "infinitetalk.safetensors", fp8_mode="fast")
    layers = CFG["num_layers"]
    with pytest.raises(ValueError, match=f"blocks_to_swap must be between 0 and {layers}"):
        load(ref, good / "base.safetensors", good / "infinitetalk.safetensors", blocks_to_swap=layers + 1)
