"""The real 14B model built on the meta device: every official key and shape, nothing allocated."""
import torch

from infinitetalk_lipsync.pipeline.dit import WAN_I2V_14B, InfiniteTalkDiT, count_parameters


def _expected_shapes(D=5120, F=13824, layers=40) -> dict:
    """The state-dict table of the spec (infinitetalk-spec.md §2.2), written out for the 14B."""
    shapes = {
        "patch_embedding.weight": (D, 36, 1, 2, 2), "patch_embedding.bias": (D,),
        "text_embedding.0.weight": (D, 4096), "text_embedding.0.bias": (D,),
        "text_embedding.2.weight": (D, D), "text_embedding.2.bias": (D,),
        "time_embedding.0.weight": (D, 256), "time_embedding.0.bias": (D,),
        "time_embedding.2.weight": (D, D), "time_embedding.2.bias": (D,),
        "time_projection.1.weight": (6 * D, D), "time_projection.1.bias": (6 * D,),
        "img_emb.proj.0.weight": (1280,), "img_emb.proj.0.bias": (1280,),
        "img_emb.proj.1.weight": (1280, 1280), "img_emb.proj.1.bias": (1280,),
        "img_emb.proj.3.weight": (D, 1280), "img_emb.proj.3.bias": (D,),
        "img_emb.proj.4.weight": (D,), "img_emb.proj.4.bias": (D,),
        "audio_proj.proj1.weight": (512, 46080), "audio_proj.proj1.bias": (512,),
        "audio_proj.proj1_vf.weight": (512, 73728), "audio_proj.proj1_vf.bias": (512,),
        "audio_proj.proj2.weight": (512, 512), "audio_proj.proj2.bias": (512,),
        "audio_proj.proj3.weight": (24576, 512), "audio_proj.proj3.bias": (24576,),
        "audio_proj.norm.weight": (768,), "audio_proj.norm.bias": (768,),
        "head.modulation": (1, 2, D), "head.head.weight": (64, D), "head.head.bias": (64,),
    }
    for i in range(layers):
        p = f"blocks.{i}."
        shapes[p + "modulation"] = (1, 6, D)
        for name in ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                     "cross_attn.v", "cross_attn.o", "cross_attn.k_img", "cross_attn.v_img",
                     "audio_cross_attn.q_linear", "audio_cross_attn.proj"):
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (D, D), (D,)
        for name in ("self_attn.norm_q", "self_attn.norm_k", "cross_attn.norm_q", "cross_attn.norm_k",
                     "cross_attn.norm_k_img"):
            shapes[p + name + ".weight"] = (D,)
        for name in ("norm3", "norm_x"):
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (D,), (D,)
        shapes[p + "ffn.0.weight"], shapes[p + "ffn.0.bias"] = (F, D), (F,)
        shapes[p + "ffn.2.weight"], shapes[p + "ffn.2.bias"] = (D, F), (D,)
        shapes[p + "audio_cross_attn.kv_linear.weight"], shapes[p + "audio_cross_attn.kv_linear.bias"] = (2 * D, 768), (2 * D,)
    return shapes


def _is_audio(key: str) -> bool:
    return key.startswith("audio_proj.") or ".audio_cross_attn." in key or ".norm_x." in key


def test_14b_on_meta_has_every_official_key_and_shape():
    with torch.device("meta"):
        model = InfiniteTalkDiT(WAN_I2V_14B)
    state = model.state_dict()
    expected = _expected_shapes()
    assert len(state) == 1633 == len(expected)
    assert set(state) == set(expected), sorted(set(state) ^ set(expected))[:10]
    for key, tensor in state.items():
        assert tuple(tensor.shape) == expected[key], key
        assert tensor.is_meta, f"{key} was allocated"
    assert all(b.is_meta for b in model.buffers())
    assert count_parameters(model) == 18_882_046_784
    audio = [k for k in state if _is_audio(k)]
    assert len(audio) == 330 and len(state) - len(audio) == 1303
    assert sum(state[k].numel() for k in audio) == 2_487_168_000


def test_blocks_and_linears_are_swappable():
    with torch.device("meta"):
        model = InfiniteTalkDiT(WAN_I2V_14B)
    assert isinstance(model.blocks, torch.nn.ModuleList) and len(model.blocks) == 40
    linears = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    # 15 per block + text 2 + time 3 + head 1 + img 2 + audio_proj 4
    assert len(linears) == 40 * 15 + 12


def test_meta_model_loads_with_assign_and_runs():
    """The loader's path: build on meta, assign the checkpoint tensors, run (no host copy of init weights)."""
    import golden
    from dit_helpers import case_for, case_inputs, tiny_config

    with torch.device("meta"):
        model = InfiniteTalkDiT(tiny_config())
    model.load_state_dict(golden.tensors("dit_tiny_weights.safetensors"), strict=True, assign=True)
    assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
    assert model.compute_dtype == torch.float32
    with torch.no_grad():
        out = model.eval()(**case_inputs(case_for("one")))
    golden.assert_close(out, golden.tensors("dit_tiny_cases.safetensors")[f"{case_for('one')}.out"], what="assign-loaded")


def test_config_from_official_config_json():
    import pytest
    from infinitetalk_lipsync.pipeline.dit import DiTConfig

    official = {"_class_name": "WanModel", "_diffusers_version": "0.30.0", "dim": 5120, "eps": 1e-06,
                "ffn_dim": 13824, "freq_dim": 256, "in_dim": 36, "model_type": "i2v", "num_heads": 40,
                "num_layers": 40, "out_dim": 16, "text_len": 512}
    assert DiTConfig.from_dict(official) == WAN_I2V_14B
    assert WAN_I2V_14B.head_dim == 128 and WAN_I2V_14B.rope_pairs == (22, 21, 21)
    with pytest.raises(ValueError, match="model_type"):
        DiTConfig.from_dict({**official, "model_type": "t2v"})
    with pytest.raises(ValueError, match="unknown key"):
        DiTConfig.from_dict({**official, "dims": 5120})
    with pytest.raises(ValueError, match="heads"):
        DiTConfig(dim=100, num_heads=40)
