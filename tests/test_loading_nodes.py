"""Loader nodes outside ComfyUI (host falls back to paths): chaining, report on the node, tooltips."""
import torch

import loading_files as lf
import loading_standin as standin
from infinitetalk_lipsync.nodes import NODE_CLASS_MAPPINGS
from infinitetalk_lipsync.nodes import loader as loader_node
from infinitetalk_lipsync.pipeline.loading import load as load_mod


def test_every_input_has_a_tooltip():
    for name in ("InfiniteTalkModelLoader", "InfiniteTalkLoRA"):
        spec = NODE_CLASS_MAPPINGS[name].INPUT_TYPES()
        for group in spec.values():
            for key, (_, opts) in group.items():
                assert opts.get("tooltip"), (name, key)
        assert NODE_CLASS_MAPPINGS[name].CATEGORY == "InfiniteTalk/loaders"


def test_loader_node_with_lora_chain(tmp_path, monkeypatch):
    ref = lf.reference()
    base, audio = lf.split(ref)
    lf.write_gguf(base, tmp_path / "wan2.1-i2v-14b-480p-Q8_0.gguf", lf.T.Q8_0)
    lf.write_st(audio, tmp_path / "Wan2_1-InfiniTetalk-Single_fp16.safetensors", dtype=torch.float16)
    lf.lora_file(base, tmp_path / "a.safetensors", seed=1)
    lf.lora_file(base, tmp_path / "b.safetensors", seed=2)
    monkeypatch.setattr(load_mod, "build_model", standin.builder(ref))
    monkeypatch.setattr(loader_node.host, "torch_device", lambda: torch.device("cpu"))
    (chain,) = loader_node.InfiniteTalkLoRA().select(str(tmp_path / "a.safetensors"), 1.0)
    (chain,) = loader_node.InfiniteTalkLoRA().select(str(tmp_path / "b.safetensors"), 0.5, prev_lora=chain)
    assert [e["strength"] for e in chain] == [1.0, 0.5]
    out = loader_node.InfiniteTalkModelLoader().load(
        str(tmp_path / "wan2.1-i2v-14b-480p-Q8_0.gguf"), str(tmp_path / "Wan2_1-InfiniTetalk-Single_fp16.safetensors"),
        "fp32", "upcast (safe, any GPU)", "sdpa", 1, lora=chain)
    (model,) = out["result"]
    (text,) = out["ui"]["text"]
    assert "GGUF Q8_0" in text and "InfiniteTalk single" in text and text.count("LoRA ") == 2
    assert model.report.blocks_to_swap == 1 and model.model.blocks[0].self_attn.q.lora is not None
