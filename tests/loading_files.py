"""Write tiny checkpoints in the real on-disk formats (checkpoint-formats.md recipes) from the
golden tiny DiT state dict: same key names, dtypes, prefixes, scale tensors and GGUF types
as the files users download."""
from __future__ import annotations

import json

import gguf
import numpy as np
import torch
from safetensors.torch import save_file

import golden
from kquants import ENCODERS

T = gguf.GGMLQuantizationType
AUDIO = ("audio_proj.", ".audio_cross_attn.", ".norm_x.")
FP8_MAX = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0}
# Kijai's fp8 keep-list: tensors whose names contain these stay float32 (checkpoint-formats §3.2).
KIJAI_KEEP = ("norm", "head", "bias", "time_", "patch_embedding", "img_emb", "modulation")
# city96: 2-D weights with these in their name are not quantised (§3.4).
GGUF_KEEP = ("modulation", "patch_embedding.", "text_embedding.", "time_projection.", "time_embedding.", "img_emb.",
             "head.")


def reference() -> dict:
    """The golden tiny DiT, float32, official names (113 keys)."""
    return dict(golden.tensors("dit_tiny_weights.safetensors"))


def is_audio(key: str) -> bool:
    return key.startswith("audio_proj.") or any(a in key for a in AUDIO[1:])


def split(sd: dict) -> tuple[dict, dict]:
    base = {k: v for k, v in sd.items() if not is_audio(k)}
    return base, {k: v for k, v in sd.items() if is_audio(k)}


def block_linear(key: str, sd: dict) -> bool:
    return key.startswith("blocks.") and key.endswith(".weight") and sd[key].dim() == 2


def write_st(sd: dict, path, dtype=None, prefix="", metadata=None):
    out = {prefix + k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
           for k, v in sd.items()}
    save_file(out, str(path), metadata=metadata)
    return path


def write_float_pair(sd: dict, folder, base_name="base.safetensors", prefix="") -> tuple:
    """The reference split into a float base file (``prefix`` on its keys) and ``infinitetalk.safetensors``."""
    base, audio = split(sd)
    write_st(base, folder / base_name, prefix=prefix)
    write_st(audio, folder / "infinitetalk.safetensors")
    return folder / base_name, folder / "infinitetalk.safetensors"


def kijai_fp8(sd: dict, fp8) -> dict:
    """Plain fp8: Linear weights cast, keep-list float32, no scales, no marker."""
    return {k: v if any(s in k for s in KIJAI_KEEP) else v.to(fp8) for k, v in sd.items()}


def scaled_fp8(sd: dict, fp8, *, marker_elems=0, scale_input=False, comfy_quant=False, rest=torch.bfloat16) -> dict:
    """Legacy ``scaled_fp8`` (marker + .scale_weight) or comfy_quant (.weight_scale + .comfy_quant) file."""
    out = {}
    for k, v in sd.items():
        if block_linear(k, sd):
            mod = k[: -len(".weight")]
            s = v.abs().max() / FP8_MAX[fp8]
            out[k] = (v / s).to(fp8)
            if comfy_quant:
                out[f"{mod}.weight_scale"] = s.float()
                conf = json.dumps({"format": str(fp8).split(".")[-1]}).encode()
                out[f"{mod}.comfy_quant"] = torch.tensor(list(conf), dtype=torch.uint8)
            else:
                out[f"{mod}.scale_weight"] = s.float().reshape(())
                if scale_input:
                    out[f"{mod}.scale_input"] = torch.tensor(1.5)
        else:
            out[k] = v.to(rest) if v.dim() > 1 else v.float()
    if not comfy_quant:
        out["scaled_fp8"] = torch.zeros(marker_elems, dtype=fp8)
    return out


def quantize(arr: np.ndarray, qtype) -> np.ndarray:
    name = qtype.name
    if name in ENCODERS:
        return ENCODERS[name](arr)
    return gguf.quants.quantize(arr, qtype)


def gguf_types(sd: dict, qtype, audio_file=False) -> dict:
    """Per-tensor GGUF type (city96 rules; Kijai's InfiniteTalk files also quantise audio_proj Linears)."""
    types = {}
    for k, v in sd.items():
        quantisable = v.dim() == 2 and k.endswith("weight") and v.numel() > 1024 and (
            not any(s in k for s in GGUF_KEEP) or (audio_file and k.startswith("audio_proj.")))
        if not quantisable:
            types[k] = T.F32
            continue
        t = qtype
        if k.endswith("ffn.2.weight") and qtype in (T.Q4_0, T.Q5_0):
            t = T.Q4_1 if qtype == T.Q4_0 else T.Q5_1
        types[k] = t if v.shape[1] % gguf.GGML_QUANT_SIZES[t][0] == 0 else T.F16  # city96's fallback
    return types


def write_gguf(sd: dict, path, qtype, arch="wan", audio_file=False, raw_blocks=False, seed=0):
    """A city96/Kijai-style GGUF. raw_blocks: quantised tensors are random valid blocks instead
    of an encoding of ``sd`` (returns the dequantised weights they stand for)."""
    types = gguf_types(sd, qtype, audio_file)
    w = gguf.GGUFWriter(path=None, arch=arch or "wan")
    if not arch:  # Kijai's audio-only GGUF: no architecture KV at all
        w.kv_data[0].pop("general.architecture", None)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(int(qtype))
    stood_for = {}
    rng = np.random.default_rng(seed)
    for k, v in sd.items():
        t = types[k]
        arr = v.float().numpy()
        if t == T.F32:
            w.add_tensor(k, arr)
        elif t == T.F16:
            w.add_tensor(k, arr.astype(np.float16))
        elif raw_blocks:
            block, size = gguf.GGML_QUANT_SIZES[t]
            raw = random_blocks(rng, t, arr.shape[0], arr.shape[1] // block)
            stood_for[k] = torch.from_numpy(gguf.quants.dequantize(raw, t).reshape(arr.shape).copy())
            w.add_tensor(k, raw, raw_dtype=t)
        else:
            w.add_tensor(k, quantize(arr, t), raw_dtype=t)
    w.write_header_to_file(path=str(path))
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stood_for


# byte offsets of the fp16 super-scales in each block (checkpoint-formats §5.5)
SCALE_OFFSETS = {"Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
                 "Q4_0": (0,), "Q5_0": (0,), "Q8_0": (0,), "Q4_1": (0, 2), "Q5_1": (0, 2)}


def random_blocks(rng, qtype, rows: int, blocks_per_row: int) -> np.ndarray:
    """Random raw blocks with small valid fp16 scales: uint8 [rows, blocks_per_row * type_size]."""
    _, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(rows * blocks_per_row, size), dtype=np.uint8)
    for off in SCALE_OFFSETS[qtype.name]:
        scale = rng.uniform(-0.01, 0.01, size=rows * blocks_per_row).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(-1, 2)
    return raw.reshape(rows, -1)


def lora_file(sd: dict, path, *, rank=4, spelling="comfy", alpha=None, seed=0, prefix="diffusion_model."):
    """A LoRA over every 2-D Linear (+ .diff for 1-D norm weights, .diff_b for biases in the comfy spelling)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if not k.endswith(".weight"):
            continue
        mod = k[: -len(".weight")]
        if v.dim() == 2 and v.numel() > 0:
            up = torch.randn(v.shape[0], rank, generator=g) * 0.05
            down = torch.randn(rank, v.shape[1], generator=g) * 0.05
            if spelling == "comfy":
                out[f"{prefix}{mod}.lora_up.weight"], out[f"{prefix}{mod}.lora_down.weight"] = up, down
            elif spelling == "peft":
                out[f"{mod}.lora_B.weight"], out[f"{mod}.lora_A.weight"] = up, down
            elif spelling == "kohya":
                name = "lora_unet__" + mod.replace(".", "_")
                out[f"{name}.lora_up.weight"], out[f"{name}.lora_down.weight"] = up, down
                mod = name
            if alpha is not None:
                out[(f"{prefix}{mod}" if spelling == "comfy" else mod) + ".alpha"] = torch.tensor(float(alpha))
            bias = f"{k[:-len('.weight')]}.bias"
            if spelling == "comfy" and bias in sd:
                out[f"{prefix}{mod}.diff_b"] = torch.randn(sd[bias].shape, generator=g) * 0.01
        elif v.dim() == 1 and spelling == "comfy":
            out[f"{prefix}{mod}.diff"] = torch.randn(v.shape, generator=g) * 0.01
    save_file({k: t.to(torch.bfloat16).contiguous() for k, t in out.items()}, str(path))
    return {k: t.to(torch.bfloat16) for k, t in out.items()}
