"""LoRA: every spelling, merged == on the fly, strength 0 == base, quantised weights on the fly."""
import gguf
import pytest
import torch

import golden
import loading_files as lf
import loading_standin as standin
from infinitetalk_lipsync.pipeline.loading import CheckpointError, load_dit

NUM_HEADS = golden.case("a_dit_tiny")["config"]["num_heads"]


def base_linears(ref) -> int:
    """Linear layers of the base model (one per 2-D weight): the ones a base-model LoRA covers."""
    return sum(1 for k, v in lf.split(ref)[0].items() if k.endswith(".weight") and v.dim() == 2)


@pytest.fixture(scope="module")
def files(tmp_path_factory, ref):
    d = tmp_path_factory.mktemp("lora")
    lf.write_float_pair(ref, d)
    return d


def load(ref, d, loras=(), base="base.safetensors", **kw):
    kw.setdefault("compute_dtype", torch.float32)
    return load_dit(d / base, d / "infinitetalk.safetensors", loras=loras, device="cpu", num_heads=NUM_HEADS,
                    model_builder=standin.builder(ref), **kw)


def merged_reference(ref, lora_sd, strength, scale_of=lambda mod: 1.0, prefix="diffusion_model."):
    """W + strength * scale * up @ down, plus diff / diff_b, computed independently of the loader."""
    out = {k: v.clone() for k, v in ref.items()}
    for k, v in lora_sd.items():
        if k.endswith(".lora_up.weight"):
            mod = k[len(prefix): -len(".lora_up.weight")]
            down = lora_sd[k.replace("lora_up", "lora_down")]
            out[f"{mod}.weight"] += strength * scale_of(mod) * (v.float() @ down.float())
        elif k.endswith(".diff_b"):
            out[f"{k[len(prefix): -len('.diff_b')]}.bias"] += strength * v.float()
        elif k.endswith(".diff"):
            out[f"{k[len(prefix): -len('.diff')]}.weight"] += strength * v.float()
    return out


def outputs(model):
    return standin.probe(model)


def close(a: dict, b: dict, rel=1e-5):
    for k in b:
        err = (a[k] - b[k]).abs().max().item()
        assert err <= rel * max(1.0, b[k].abs().max().item()), (k, err)


def test_comfy_extract_format_merged(files, ref):
    base, _ = lf.split(ref)
    sd = lf.lora_file(base, files / "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors")
    model, report = load(ref, files, [(files / "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors", 0.8)])
    close(outputs(model), standin.probe_reference(merged_reference(ref, sd, 0.8)))
    (entry,) = report.loras
    assert entry["applied"] == len([k for k in sd if not k.endswith(".lora_down.weight")]) and not entry["unmatched"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merged_equals_on_the_fly(files, ref, dtype):
    base, _ = lf.split(ref)
    lf.lora_file(base, files / "fusionx.safetensors", alpha=2.0)
    loras = [(files / "fusionx.safetensors", 1.0)]
    merged, _ = load(ref, files, loras, compute_dtype=dtype)
    live, report = load(ref, files, loras, compute_dtype=dtype, lora_mode="on_the_fly")
    assert report.linear_storage.get("float + on-the-fly LoRA") == base_linears(ref)
    a, b = outputs(merged), outputs(live)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_strength_zero_is_base(files, ref):
    base, _ = lf.split(ref)
    lf.lora_file(base, files / "l.safetensors")
    model, report = load(ref, files, [(files / "l.safetensors", 0.0)])
    plain, _ = load(ref, files)
    a, b = outputs(model), outputs(plain)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert report.loras[0]["applied"] == 0 and "strength 0" in report.loras[0]["mode"]


@pytest.mark.parametrize("spelling", ["peft", "kohya"])
def test_other_spellings(files, ref, spelling):
    base, _ = lf.split(ref)
    sd = lf.lora_file(base, files / f"{spelling}.safetensors", spelling=spelling, alpha=8.0, rank=4)
    model, report = load(ref, files, [(files / f"{spelling}.safetensors", 0.5)])
    # rename to the comfy spelling for the independent reference; alpha/rank = 2
    comfy = {}
    for k, v in sd.items():
        if k.endswith(".alpha"):
            continue
        mod, _, rest = k.partition(".lora_")
        mod = mod.replace("lora_unet__", "")
        if spelling == "kohya":
            mod = next(m[: -len(".weight")] for m in ref if m.replace(".", "_") == mod + "_weight")
        comfy[f"diffusion_model.{mod}.lora_" + {"B.weight": "up.weight", "A.weight": "down.weight"}.get(rest, rest)] = v
    close(outputs(model), standin.probe_reference(merged_reference(ref, comfy, 0.5, lambda m: 8.0 / 4)))
    assert report.loras[0]["applied"] == base_linears(ref)


def test_two_loras_and_unmatched_keys_reported(files, ref):
    base, _ = lf.split(ref)
    a = lf.lora_file(base, files / "a.safetensors", seed=1)
    b = dict(lf.lora_file(base, files / "b.safetensors", seed=2))
    b["diffusion_model.vace_blocks.0.proj.lora_up.weight"] = torch.zeros(4, 4, dtype=torch.bfloat16)
    b["diffusion_model.vace_blocks.0.proj.lora_down.weight"] = torch.zeros(4, 4, dtype=torch.bfloat16)
    lf.write_st(b, files / "b.safetensors")
    model, report = load(ref, files, [(files / "a.safetensors", 1.0), (files / "b.safetensors", -0.5)])
    expected = merged_reference(merged_reference(ref, a, 1.0), {k: v for k, v in b.items() if "vace" not in k}, -0.5)
    close(outputs(model), standin.probe_reference(expected))
    assert report.loras[1]["unmatched"] == ["diffusion_model.vace_blocks.0.proj.lora_down.weight",
                                            "diffusion_model.vace_blocks.0.proj.lora_up.weight"]
    assert "vace_blocks" in report.text()


def test_lora_on_gguf_and_scaled_fp8_is_on_the_fly(files, ref):
    base, audio = lf.split(ref)
    sd = lf.lora_file(base, files / "l.safetensors")
    loras = [(files / "l.safetensors", 1.0)]
    stood = lf.write_gguf(base, files / "q.gguf", gguf.GGMLQuantizationType.Q8_0, raw_blocks=True)
    model, report = load(ref, files, loras, base="q.gguf")
    assert any("gguf" in k for k in report.linear_storage) and "on the fly" in report.loras[0]["mode"]
    q = model.blocks[0].self_attn.q
    assert q.lora is not None and q.qweight.dtype == torch.uint8
    assert not q.qweight.untyped_storage().resizable()  # the GGUF blocks stay in the mapped file
    types = lf.gguf_types(base, gguf.GGMLQuantizationType.Q8_0)
    dense = {k: stood.get(k, v.half().float() if types.get(k) == gguf.GGMLQuantizationType.F16 else v)
             for k, v in ref.items()}
    close(outputs(model), standin.probe_reference(merged_reference(dense, sd, 1.0)))

    lf.write_st(lf.scaled_fp8(base, torch.float8_e4m3fn), files / "s.safetensors")
    fp8_model, _ = load(ref, files, loras, base="s.safetensors")
    q = fp8_model.blocks[0].self_attn.q
    assert q.weight.dtype == torch.float8_e4m3fn and q.lora is not None
    w = q.weight.float() * q.scale_weight + 1.0 * (sd["diffusion_model.blocks.0.self_attn.q.lora_up.weight"].float()
                                                   @ sd["diffusion_model.blocks.0.self_attn.q.lora_down.weight"].float())
    assert torch.equal(q.dense_weight(), w)


def test_lora_for_another_model_errors(files, ref, tmp_path):
    small = {k: v[:, :16] if v.dim() == 2 else v for k, v in lf.split(ref)[0].items()}
    lf.lora_file(small, tmp_path / "wan1.3b_lora.safetensors")
    with pytest.raises(CheckpointError, match="wan1.3b_lora.safetensors: LoRA shapes do not fit"):
        load(ref, files, [(tmp_path / "wan1.3b_lora.safetensors", 1.0)])
    lf.write_st({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8),
                 "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(8, 4)},
                tmp_path / "sdxl_style.safetensors")
    with pytest.raises(CheckpointError, match="matches no weight of the model"):
        load(ref, files, [(tmp_path / "sdxl_style.safetensors", 1.0)])
    with pytest.raises(CheckpointError, match="not a LoRA file"):
        load(ref, files, [(files / "infinitetalk.safetensors", 1.0)])


def test_merge_path_never_builds_device_patch_stacks(files, ref, monkeypatch):
    """Merged float weights bake the LoRA in: no per-Linear patch stack is built or moved to the device."""
    from infinitetalk_lipsync.pipeline.loading import lora as lora_mod

    built = []
    real = lora_mod.PatchStack.__init__
    monkeypatch.setattr(lora_mod.PatchStack, "__init__", lambda self, p: built.append(1) or real(self, p))
    base, _ = lf.split(ref)
    lf.lora_file(base, files / "merge_only.safetensors")
    load(ref, files, [(files / "merge_only.safetensors", 1.0)])
    assert built == []
    load(ref, files, [(files / "merge_only.safetensors", 1.0)], lora_mode="on_the_fly")
    assert len(built) == base_linears(ref)


def test_modulation_diffs_are_reported_not_applied(files, ref):
    """diff_m (Kijai's wrapper applies it; the official loader and ComfyUI core skip it): we follow the official."""
    from safetensors.torch import load_file, save_file

    base, _ = lf.split(ref)
    lf.lora_file(base, files / "plain.safetensors")
    sd = load_file(str(files / "plain.safetensors"))
    mods = [k for k in base if k.endswith(".modulation")]
    for k in mods:
        sd[f"diffusion_model.{k[:-len('.modulation')]}.diff_m"] = torch.ones_like(base[k]).bfloat16()
    save_file(sd, str(files / "with_diff_m.safetensors"))
    model, report = load(ref, files, [(files / "with_diff_m.safetensors", 1.0)])
    plain, _ = load(ref, files, [(files / "plain.safetensors", 1.0)])
    a, b = outputs(model), outputs(plain)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert report.loras[0]["skipped"] == len(mods) and "diff_m" in report.text()
