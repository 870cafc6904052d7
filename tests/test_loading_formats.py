"""Every checkpoint format, synthesised tiny from the golden DiT, loads and gives the float
reference's outputs: exactly for float formats, within measured bounds for fp8 and GGUF."""
import gguf
import pytest
import torch

import golden
import loading_files as lf
import loading_standin as standin
import quant_bounds as qb
from infinitetalk_lipsync.pipeline.loading import load_dit

T = gguf.GGMLQuantizationType

# Quantised formats are checked against bounds derived from the format itself (tests/quant_bounds.py),
# never against a measured error: every Linear output of the loaded model must lie within the
# propagated per-weight step of the format from the exact float output.
GGUF_TYPES = ["Q8_0", "Q6_K", "Q5_K", "Q5_0", "Q5_1", "Q4_K", "Q4_0", "Q4_1", "Q3_K", "Q2_K"]


@pytest.fixture(scope="module")
def cfg():
    c = golden.case("a_dit_tiny")["config"]
    return dict(dim=c["dim"], ffn_dim=c["ffn_dim"], num_layers=c["num_layers"], in_dim=c["in_dim"],
                out_dim=c["out_dim"], freq_dim=c["freq_dim"], text_dim=c["text_dim"], num_heads=c["num_heads"],
                patch_size=tuple(c["patch_size"]), intermediate_dim=c["intermediate_dim"],
                output_dim=c["output_dim"], context_tokens=c["context_tokens"])


def load(ref, cfg, base, audio, **kw):
    kw.setdefault("compute_dtype", torch.float32)
    return load_dit(base, audio, device="cpu", num_heads=cfg["num_heads"], model_builder=standin.builder(ref, cfg), **kw)


def assert_within_format(model, ref: dict, bounds: dict):
    """Every probe output within the format bound of the exact float reference.

    bounds: {key: elementwise |stored - exact| bound} for the stored tensors that are not exact."""
    out, exact_out = standin.probe(model), standin.probe_reference(ref)
    assert set(out) == set(exact_out)
    for name, y in exact_out.items():
        weight = f"{name}.weight"
        if weight in ref and ref[weight].dim() == 2:
            x = standin._input(name, ref[weight].shape[1], 0)
            bound = qb.linear_output_bound(bounds.get(weight, torch.zeros_like(ref[weight])), ref[weight], x)
        else:
            bound = bounds.get(name, torch.zeros_like(y)).float() + 1e-7
        excess = ((out[name] - y).abs() - bound).max().item()
        assert excess <= 0, f"{name}: error exceeds the format bound by {excess:.3e}"


def exact(model, reference: dict):
    out = standin.probe(model)
    assert set(out) == set(reference)
    for k in reference:
        assert torch.equal(out[k], reference[k]), k


def n_linears(sd: dict) -> int:
    """Linear layers of the model: one per 2-D weight."""
    return sum(1 for k, v in sd.items() if k.endswith(".weight") and v.dim() == 2)


def stored(sd: dict) -> dict:
    """The reference as a file holding ``sd`` represents it (values rounded to the stored dtype)."""
    return {k: v.float() for k, v in sd.items()}


@pytest.mark.parametrize("dtype,prefix", [(torch.float32, ""), (torch.float16, "model.diffusion_model."),
                                          (torch.bfloat16, "diffusion_model.")])
def test_float_safetensors_exact(tmp_path, ref, cfg, dtype, prefix):
    base, audio = lf.split(ref)
    lf.write_st(base, tmp_path / "wan2.1_i2v_480p_14B.safetensors", dtype=dtype, prefix=prefix)
    kijai = {k: v.half() if v.dim() == 2 and k.startswith("blocks.") else v for k, v in audio.items()}
    lf.write_st(kijai, tmp_path / "Wan2_1-InfiniTetalk-Single_fp16.safetensors")
    model, report = load(ref, cfg, tmp_path / "wan2.1_i2v_480p_14B.safetensors",
                         tmp_path / "Wan2_1-InfiniTetalk-Single_fp16.safetensors")
    expected = {**{k: v.to(dtype) for k, v in base.items()}, **kijai}
    exact(model, standin.probe_reference(stored(expected)))
    assert "Wan 2.1 I2V" in report.family and "single" in report.audio_kind
    assert report.linear_storage == {"float": n_linears(ref)}


def test_compute_dtype_bf16(tmp_path, ref, cfg):
    base, audio = lf.split(ref)
    lf.write_st(base, tmp_path / "b.safetensors")
    lf.write_st(audio, tmp_path / "infinitetalk.safetensors")
    model, report = load(ref, cfg, tmp_path / "b.safetensors", tmp_path / "infinitetalk.safetensors",
                         compute_dtype="bf16")
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    exact(model, standin.probe_reference(ref, dtype=torch.bfloat16))
    assert report.compute_dtype == "bfloat16"


def test_pickle_weights_only(tmp_path, ref, cfg):
    base, audio = lf.split(ref)
    torch.save({"state_dict": base}, tmp_path / "base.pth")
    torch.save(audio, tmp_path / "audio.pt")
    model, _ = load(ref, cfg, tmp_path / "base.pth", tmp_path / "audio.pt")
    exact(model, standin.probe_reference(ref))


@pytest.mark.parametrize("fp8", ["e4m3fn", "e5m2"])
def test_plain_fp8_kijai(tmp_path, ref, cfg, fp8):
    dt = getattr(torch, f"float8_{fp8}")
    base, audio = lf.split(ref)
    sd = lf.kijai_fp8(base, dt)
    lf.write_st(sd, tmp_path / f"Wan2_1-I2V-14B-480P_fp8_{fp8}.safetensors")
    lf.write_st(audio, tmp_path / "it.safetensors")
    model, report = load(ref, cfg, tmp_path / f"Wan2_1-I2V-14B-480P_fp8_{fp8}.safetensors", tmp_path / "it.safetensors")
    exact(model, standin.probe_reference({**stored(sd), **audio}))  # fp8 values up-cast exactly
    assert "plain" in report.base_quant and any(k.startswith("fp8") for k in report.linear_storage)
    assert_within_format(model, ref, qb.fp8_bounds(base, dt, scaled=False))


def _scaled_reference(sd):
    out = {}
    for k, v in sd.items():
        if k.endswith((".scale_weight", ".weight_scale", ".scale_input", ".comfy_quant")) or k == "scaled_fp8":
            continue
        mod = k[: -len(".weight")]
        scale = sd.get(f"{mod}.scale_weight", sd.get(f"{mod}.weight_scale"))
        out[k] = v.float() * scale.float() if scale is not None and k.endswith(".weight") else v.float()
    return out


@pytest.mark.parametrize("variant", ["e4m3fn", "e4m3fn-prefixed", "e5m2", "marker2", "scale_input", "comfy_quant",
                                     "comfy_quant-metadata"])
def test_scaled_fp8(tmp_path, ref, cfg, variant):
    fp8 = torch.float8_e5m2 if variant == "e5m2" else torch.float8_e4m3fn
    base, audio = lf.split(ref)
    sd = lf.scaled_fp8(base, fp8, marker_elems=2 if variant == "marker2" else 0, scale_input=variant == "scale_input",
                       comfy_quant=variant.startswith("comfy_quant"))
    metadata = None
    if variant == "comfy_quant-metadata":  # layer configs in the header instead of per-layer U8 tensors
        import json
        layers = {k[: -len(".comfy_quant")]: {"format": "float8_e4m3fn"} for k in sd if k.endswith(".comfy_quant")}
        sd = {k: v for k, v in sd.items() if not k.endswith(".comfy_quant")}
        metadata = {"_quantization_metadata": json.dumps({"format_version": "1.0", "layers": layers})}
    prefix = "model.diffusion_model." if variant == "e4m3fn-prefixed" else ""
    lf.write_st(sd, tmp_path / "Wan2_1-I2V-14B-480p_fp8_scaled_KJ.safetensors", prefix=prefix, metadata=metadata)
    it = lf.scaled_fp8(audio, fp8)  # Kijai's scaled InfiniteTalk file
    lf.write_st(it, tmp_path / "Wan2_1-InfiniteTalk-Multi_fp8_e4m3fn_scaled_KJ.safetensors")
    model, report = load(ref, cfg, tmp_path / "Wan2_1-I2V-14B-480p_fp8_scaled_KJ.safetensors",
                         tmp_path / "Wan2_1-InfiniteTalk-Multi_fp8_e4m3fn_scaled_KJ.safetensors")
    exact(model, standin.probe_reference({**_scaled_reference(sd), **_scaled_reference(it)}))
    assert "multi" in report.audio_kind
    assert ("comfy_quant" in report.base_quant) == variant.startswith("comfy_quant")
    assert_within_format(model, ref, {**qb.fp8_bounds(base, fp8, scaled=True), **qb.fp8_bounds(audio, fp8, scaled=True)})


def test_scaled_mm_mode(tmp_path, ref, cfg):
    """fp8 matmul with per-token activation scales (CPU _scaled_mm here) stays close to up-casting."""
    base, audio = lf.split(ref)
    lf.write_st(lf.scaled_fp8(base, torch.float8_e4m3fn), tmp_path / "b.safetensors")
    lf.write_st(audio, tmp_path / "a.safetensors")
    up, _ = load(ref, cfg, tmp_path / "b.safetensors", tmp_path / "a.safetensors", compute_dtype=torch.bfloat16)
    mm, report = load(ref, cfg, tmp_path / "b.safetensors", tmp_path / "a.safetensors", compute_dtype=torch.bfloat16,
                      fp8_mode="scaled_mm")
    assert report.fp8_mode == "scaled_mm"
    q = mm.blocks[0].self_attn.q
    x = torch.randn(2, 5, q.in_features, dtype=torch.bfloat16)
    a, b = up.blocks[0].self_attn.q(x).float(), q._fp8_forward(x).float()
    assert b.shape == a.shape and ((a - b).abs().max() / a.abs().max()).item() < 0.08


@pytest.mark.parametrize("name", GGUF_TYPES)
def test_gguf_within_format_bound(tmp_path, ref, cfg, name):
    qtype = getattr(T, name)
    base, audio = lf.split(ref)
    lf.write_gguf(base, tmp_path / f"wan2.1-i2v-14b-480p-{name}.gguf", qtype)
    lf.write_gguf(audio, tmp_path / f"Wan2_1-InfiniteTalk_Single_{name}.gguf", qtype, arch=None, audio_file=True)
    model, report = load(ref, cfg, tmp_path / f"wan2.1-i2v-14b-480p-{name}.gguf",
                         tmp_path / f"Wan2_1-InfiniteTalk_Single_{name}.gguf")
    assert report.base_quant.startswith("GGUF") and any(k.startswith(f"gguf {name}") for k in report.linear_storage)
    types = {**lf.gguf_types(base, qtype), **lf.gguf_types(audio, qtype, audio_file=True)}
    assert_within_format(model, ref, qb.gguf_bounds(ref, types))


@pytest.mark.parametrize("name", ["Q8_0", "Q4_1", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"])
def test_gguf_exact_on_random_blocks(tmp_path, ref, cfg, name):
    """Blocks of random valid bytes: outputs equal the gguf-dequantised weights exactly."""
    qtype = getattr(T, name)
    base, audio = lf.split(ref)
    stood = lf.write_gguf(base, tmp_path / "b.gguf", qtype, raw_blocks=True)
    stood.update(lf.write_gguf(audio, tmp_path / "a.gguf", qtype, arch=None, audio_file=True, raw_blocks=True, seed=1))
    model, _ = load(ref, cfg, tmp_path / "b.gguf", tmp_path / "a.gguf")
    types = {**lf.gguf_types(base, qtype), **lf.gguf_types(audio, qtype, audio_file=True)}
    expected = {k: stood.get(k, v.half().float() if types[k] == T.F16 else v) for k, v in ref.items()}
    exact(model, standin.probe_reference(expected))


def test_gguf_float_types(tmp_path, ref, cfg):
    """F16 and BF16 GGUF tensors load exactly (BF16 stays raw bytes in the file)."""
    import numpy as np
    base, audio = lf.split(ref)
    w = gguf.GGUFWriter(path=None, arch="wan")
    expected = {}
    for i, (k, v) in enumerate(base.items()):
        arr = v.numpy()
        if v.dim() == 2 and i % 2:
            w.add_tensor(k, gguf.quants.quantize(arr, T.BF16), raw_dtype=T.BF16)
            expected[k] = v.bfloat16().float()
        elif v.dim() == 2:
            w.add_tensor(k, arr.astype(np.float16))
            expected[k] = v.half().float()
        else:
            w.add_tensor(k, arr)
            expected[k] = v
    w.write_header_to_file(path=str(tmp_path / "f.gguf"))
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    lf.write_st(audio, tmp_path / "a.safetensors")
    model, report = load(ref, cfg, tmp_path / "f.gguf", tmp_path / "a.safetensors")
    exact(model, standin.probe_reference({**expected, **audio}))
    assert report.linear_storage == {"float": n_linears(ref)}


def test_float_views_are_zero_copy(tmp_path, ref, cfg):
    """fp32 file + fp32 compute on CPU: parameters are views into the mapped file, not copies."""
    base, audio = lf.split(ref)
    lf.write_st(base, tmp_path / "b.safetensors")
    lf.write_st(audio, tmp_path / "a.safetensors")
    model, _ = load(ref, cfg, tmp_path / "b.safetensors", tmp_path / "a.safetensors")
    w = model.blocks[0].ffn[0].weight if hasattr(model.blocks[0].ffn, "__getitem__") else model.blocks[0].ffn._modules["0"].weight
    assert not w.untyped_storage().resizable()  # storage borrowed from the mmap, not allocated by torch


def test_fp8_activation_quantisation_round_trips():
    """The per-token scales of the fp8 matmul path reproduce the activations to fp8 precision."""
    from infinitetalk_lipsync.pipeline.loading.quant_linear import _quantize_fp8

    x = torch.randn(48, 64, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 3, 48)[:, None]
    for rowwise in (True, False):
        q, scale = _quantize_fp8(x, rowwise)
        assert q.dtype == torch.float8_e4m3fn and scale.shape == ((48, 1) if rowwise else ())
        back = q.float() * scale
        # e4m3 keeps 3 mantissa bits: relative error <= 2^-4 per element, plus half the smallest
        # subnormal (2^-9) times the scale for elements that fall below the normal range
        assert ((back - x).abs() <= x.abs() * 2 ** -4 + scale * 2 ** -10).all()
