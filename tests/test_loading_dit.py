"""load_dit into the real InfiniteTalkDiT: golden parity for float files, measured bounds for fp8
and GGUF, LoRA merged == on the fly, block swap transparent."""
import gguf
import pytest
import torch

import golden
import loading_files as lf
import quant_bounds as qb
from dit_helpers import case_for, case_inputs, case_names, tiny_config
from infinitetalk_lipsync.pipeline.dit import InfiniteTalkDiT
from infinitetalk_lipsync.pipeline.loading import load_dit

T = gguf.GGMLQuantizationType
CFG = golden.case("a_dit_tiny")["config"]
HEADS = CFG["num_heads"]
# Whole-model check of quantised files against the official output: within AMPLIFY times the format's
# relative step (tests/quant_bounds.py). Per-Linear bounds that follow from the format alone are in
# test_loading_formats; through a few blocks of attention and norms the relative error stays within a
# small multiple of the step, while a wrong decoding is off by O(1).
AMPLIFY = 4.0
FORMATS = ["Q8_0", "Q4_K", "Q4_0", "fp8 e4m3fn scaled", "fp8 e5m2"]


def format_step(name: str, base: dict, audio: dict) -> float:
    """The format's worst relative step over the quantised tensors of ``base`` and ``audio``."""
    if name.startswith("fp8"):
        dt = getattr(torch, f"float8_{name.split()[1]}")
        scaled = name.endswith("scaled")
        bounds = {**qb.fp8_bounds(base, dt, scaled), **(qb.fp8_bounds(audio, dt, scaled) if scaled else {})}
    else:
        qtype = getattr(T, name)
        bounds = {**qb.gguf_bounds(base, lf.gguf_types(base, qtype)),
                  **qb.gguf_bounds(audio, lf.gguf_types(audio, qtype, audio_file=True))}
    return qb.relative_step(bounds, {**base, **audio})


def run(model, case=None):
    with torch.no_grad():
        return model(**case_inputs(case or case_for("zero")))


def official(case=None):
    return golden.tensors("dit_tiny_cases.safetensors")[f"{case or case_for('zero')}.out"]


def rel(out, ref_out):
    return ((out - ref_out).abs().max() / ref_out.abs().max()).item()


def load(base, audio, **kw):
    kw.setdefault("compute_dtype", torch.float32)
    return load_dit(base, audio, device="cpu", num_heads=HEADS, **kw)


def reference_model(sd, dtype=torch.float32):
    model = InfiniteTalkDiT(tiny_config()).to(dtype).eval()
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True)
    return model


@pytest.fixture(scope="module")
def float_files(tmp_path_factory, ref):
    return lf.write_float_pair(ref, tmp_path_factory.mktemp("dit"), "wan2.1_i2v_480p_14B_fp32.safetensors",
                               prefix="model.diffusion_model.")


def test_fp32_files_match_official(float_files):
    model, report = load(*float_files)
    assert report.family == f"Wan 2.1 I2V dim {CFG['dim']}, {CFG['num_layers']} blocks" and model.compute_dtype == torch.float32
    for case in case_names():
        golden.assert_close(run(model, case), official(case), what=case)


@pytest.mark.parametrize("file_dtype,compute", [(torch.float16, torch.float32), (torch.bfloat16, torch.bfloat16)])
def test_float_files_exact(tmp_path, ref, file_dtype, compute):
    base, audio = lf.split(ref)
    lf.write_st(base, tmp_path / "b.safetensors", dtype=file_dtype)
    kijai = {k: v.half() if v.dim() == 2 and k.startswith("blocks.") else v for k, v in audio.items()}
    lf.write_st(kijai, tmp_path / "Wan2_1-InfiniTetalk-Single_fp16.safetensors")
    model, _ = load(tmp_path / "b.safetensors", tmp_path / "Wan2_1-InfiniTetalk-Single_fp16.safetensors",
                    compute_dtype=compute)
    stored = {**{k: v.to(file_dtype).float() for k, v in base.items()}, **{k: v.float() for k, v in kijai.items()}}
    assert model.compute_dtype == compute
    assert torch.equal(run(model), run(reference_model(stored, compute)))


@pytest.mark.parametrize("name", [n for n in FORMATS if not n.startswith("fp8")])
def test_gguf_model_output(tmp_path, ref, name):
    base, audio = lf.split(ref)
    lf.write_gguf(base, tmp_path / "b.gguf", getattr(T, name))
    lf.write_gguf(audio, tmp_path / "a.gguf", getattr(T, name), arch=None, audio_file=True)
    model, _ = load(tmp_path / "b.gguf", tmp_path / "a.gguf")
    err, step = rel(run(model), official()), format_step(name, base, audio)
    assert err <= AMPLIFY * step, f"{name}: {err:.4f} > {AMPLIFY} x step {step:.4f}"


@pytest.mark.parametrize("fp8,scaled", [("e4m3fn", True), ("e5m2", False)])
def test_fp8_model_output(tmp_path, ref, fp8, scaled):
    dt = getattr(torch, f"float8_{fp8}")
    base, audio = lf.split(ref)
    sd = lf.scaled_fp8(base, dt) if scaled else lf.kijai_fp8(base, dt)
    lf.write_st(sd, tmp_path / "b.safetensors")
    lf.write_st(lf.scaled_fp8(audio, dt) if scaled else audio, tmp_path / "a.safetensors")
    model, _ = load(tmp_path / "b.safetensors", tmp_path / "a.safetensors")
    name = f"fp8 {fp8}" + (" scaled" if scaled else "")
    err, step = rel(run(model), official()), format_step(name, base, audio)
    assert err <= AMPLIFY * step, f"{name}: {err:.4f} > {AMPLIFY} x step {step:.4f}"


def test_lora_merged_equals_on_the_fly_and_zero_is_base(tmp_path, ref, float_files):
    lf.lora_file(lf.split(ref)[0], tmp_path / "lightx2v.safetensors", alpha=4.0)
    loras = [(tmp_path / "lightx2v.safetensors", 0.7)]
    merged, _ = load(*float_files, loras=loras, compute_dtype=torch.bfloat16)
    live, _ = load(*float_files, loras=loras, compute_dtype=torch.bfloat16, lora_mode="on_the_fly")
    assert torch.equal(run(merged), run(live))
    zero, _ = load(*float_files, loras=[(tmp_path / "lightx2v.safetensors", 0.0)])
    plain, _ = load(*float_files)
    assert torch.equal(run(zero), run(plain))


def test_lora_on_gguf_matches_merged_dequantised(tmp_path, ref):
    base, audio = lf.split(ref)
    stood = lf.write_gguf(base, tmp_path / "b.gguf", T.Q8_0, raw_blocks=True)
    lf.write_st(audio, tmp_path / "a.safetensors")
    lf.lora_file(base, tmp_path / "l.safetensors")
    types = lf.gguf_types(base, T.Q8_0)
    dense = {k: stood.get(k, v.half().float() if types[k] == T.F16 else v) for k, v in base.items()}
    lf.write_st(dense, tmp_path / "dense.safetensors")
    loras = [(tmp_path / "l.safetensors", 1.0)]
    quant, _ = load(tmp_path / "b.gguf", tmp_path / "a.safetensors", loras=loras)
    merged, _ = load(tmp_path / "dense.safetensors", tmp_path / "a.safetensors", loras=loras)
    golden.assert_close(run(quant), run(merged), what="GGUF + on-the-fly LoRA")


def test_block_swap_is_transparent(float_files, n=1):
    plain, _ = load(*float_files)
    swapped, report = load(*float_files, blocks_to_swap=n)
    layers = CFG["num_layers"]
    assert report.blocks_to_swap == n and swapped._block_swap.swapped == list(range(layers - n, layers))
    assert torch.equal(run(swapped, case_for("two")), run(plain, case_for("two")))
