"""Recognise what a checkpoint is from its keys and shapes (never from its file name).

``inspect_base`` accepts only a Wan 2.1 I2V DiT (14B, or any size with the same layout);
``inspect_audio`` accepts only the 330-key InfiniteTalk/MultiTalk audio adapter. Anything
else raises :class:`CheckpointError` saying what the file is and where it belongs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import CheckpointError
from .reader import Checkpoint

BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")  # a key inside block N
LORA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight", ".diff", ".diff_b",
                 ".alpha", ".lora.down.weight", ".lora.up.weight")
# Tensors that describe fp8 quantisation rather than model parameters.
SCALE_SUFFIXES = (".scale_weight", ".scale_input", ".weight_scale", ".input_scale", ".comfy_quant")
AUDIO_MARKERS = ("audio_proj.proj1.weight", "blocks.0.audio_cross_attn.proj.weight")
FP8_TYPES = ("F8_E4M3", "F8_E5M2")


def is_aux_key(key: str) -> bool:
    """Quantisation side tensors (fp8 scales, markers) that are not model parameters."""
    return key == "scaled_fp8" or key.endswith(SCALE_SUFFIXES)


def count_blocks(keys) -> int:
    ids = {int(m.group(1)) for k in keys if (m := BLOCK_KEY.match(k))}
    return max(ids) + 1 if ids else 0


@dataclass
class Quant:
    """How a file stores its weights: kind in {float, fp8, fp8_scaled, comfy_quant, gguf}."""
    kind: str
    label: str


def quant_of(ckpt: Checkpoint) -> Quant:
    counts = ckpt.type_counts()
    if ckpt.format == "gguf":
        quantised = sorted(t for t in counts if t not in ("F32", "F16", "BF16"))
        label = "GGUF " + ("/".join(quantised) if quantised else "unquantised")
        return Quant("gguf", label)
    keys = ckpt.keys()
    fp8 = sorted({"float8_e4m3fn" if ckpt.type_name(k) == "F8_E4M3" else "float8_e5m2"
                  for k in keys if ckpt.type_name(k) in FP8_TYPES and k != "scaled_fp8"})
    if "_quantization_metadata" in ckpt.metadata or any(k.endswith(".comfy_quant") for k in keys):
        return Quant("comfy_quant", f"{'/'.join(fp8) or 'quantised'} (comfy_quant, per-layer scales)")
    if "scaled_fp8" in ckpt or any(k.endswith((".scale_weight", ".weight_scale")) for k in keys):
        return Quant("fp8_scaled", f"{'/'.join(fp8) or 'fp8'} scaled (per-layer scale_weight)")
    if fp8:
        return Quant("fp8", f"{'/'.join(fp8)} (plain, unscaled)")
    floats = {t: n for t, n in counts.items() if t in ("F32", "F16", "BF16", "F64")}
    main = max(floats, key=floats.get) if floats else "?"
    return Quant("float", {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F64": "fp64"}.get(main, main))


def _looks_like_lora(keys) -> bool:
    return sum(k.endswith(LORA_SUFFIXES) for k in keys) * 2 > len(keys)


@dataclass
class BaseInfo:
    family: str
    variant: str
    dims: dict
    quant: Quant
    has_audio: bool


@dataclass
class AudioInfo:
    kind: str  # "single" / "multi" / "single or multi"
    dims: dict
    quant: Quant


def _shape(ckpt, key, rank=None):
    if key not in ckpt:
        raise CheckpointError(ckpt.path, f"required tensor '{key}' is missing", keys=[key],
                              fix="the file is incomplete or not the expected model; download it again")
    s = ckpt.shape(key)
    if rank is not None and len(s) != rank:
        raise CheckpointError(ckpt.path, f"tensor '{key}' has an unexpected shape", found=str(s),
                              expected=f"a {rank}-D tensor", keys=[key])
    return s


def inspect_base(ckpt: Checkpoint) -> BaseInfo:
    """Check ``ckpt`` is a Wan 2.1 I2V DiT; derive its dims. Raises CheckpointError otherwise."""
    keys = ckpt.keys()
    where = "the base model (diffusion_models / unet folder)"
    if "head.modulation" not in ckpt:
        if all(m in ckpt for m in AUDIO_MARKERS):
            raise CheckpointError(ckpt.path, f"this is the InfiniteTalk audio adapter, not a Wan base model",
                                  found=f"{len(keys)} audio-adapter tensors (audio_proj.*, blocks.N.audio_cross_attn.*)",
                                  expected="a Wan 2.1 I2V 14B DiT (keys such as head.modulation, blocks.0.self_attn.q.weight)",
                                  fix="select this file as the InfiniteTalk model and choose a Wan2.1 I2V 14B 480P/720P "
                                      f"file as {where}")
        if _looks_like_lora(keys):
            raise CheckpointError(ckpt.path, "this is a LoRA, not a base model", keys=keys[:5],
                                  fix="load it through an InfiniteTalk LoRA node and pick a Wan2.1 I2V 14B base model")
        raise CheckpointError(ckpt.path, "not a Wan video DiT (no 'head.modulation' tensor)", keys=sorted(keys)[:5],
                              expected="a Wan 2.1 I2V 14B DiT", fix=f"choose a Wan2.1 I2V 14B 480P/720P file as {where}")
    pe = _shape(ckpt, "patch_embedding.weight", 5)
    dim, in_dim = pe[0], pe[1]
    head = _shape(ckpt, "head.head.weight", 2)
    patch = tuple(pe[2:])
    out_dim = head[0] // (patch[0] * patch[1] * patch[2])
    n_layers = count_blocks(keys)
    has_img = "img_emb.proj.1.weight" in ckpt and "blocks.0.cross_attn.k_img.weight" in ckpt
    if any(k.startswith("vace_") for k in keys):
        found = "Wan VACE model (vace_blocks.*)"
    elif in_dim == 48 or out_dim == 48:
        found = f"Wan 2.2 TI2V 5B (in_dim {in_dim}, 48-channel latents)"
    elif in_dim == 16:
        found = "a text-to-video (T2V) Wan model (in_dim 16, no image conditioning)"
    elif in_dim == 36 and not has_img:
        found = "Wan 2.2 I2V A14B or another image model without CLIP image embedding (no img_emb / k_img)"
    elif "img_emb.emb_pos" in ckpt:
        found = "Wan 2.1 FLF2V (first-last-frame) model (img_emb.emb_pos)"
    elif in_dim != 36:
        found = f"a Wan-like DiT with in_dim {in_dim}"
    else:
        found = ""
    if found:
        raise CheckpointError(ckpt.path, "wrong model family for InfiniteTalk", found=found,
                              expected="Wan 2.1 I2V 14B (in_dim 36 = 16 noise + 4 mask + 16 image latents, with img_emb)",
                              fix="download Wan2.1-I2V-14B-480P or -720P (fp16/bf16/fp8/GGUF) into models/diffusion_models")
    dims = dict(dim=dim, in_dim=in_dim, out_dim=out_dim, patch_size=patch, num_layers=n_layers,
                ffn_dim=_shape(ckpt, "blocks.0.ffn.0.weight", 2)[0],
                freq_dim=_shape(ckpt, "time_embedding.0.weight", 2)[1],
                text_dim=_shape(ckpt, "text_embedding.0.weight", 2)[1])
    size = "14B" if (dim, n_layers) == (5120, 40) else f"dim {dim}, {n_layers} blocks"
    # 480P and 720P share every shape; only the file name can hint which one this is.
    hint = [v for v in ("480p", "720p") if v in ckpt.name.lower()]
    variant = (f"{hint[0].upper()} (from the file name; " if len(hint) == 1 else "480P or 720P (") + \
        "same architecture, weights alone cannot tell)"
    return BaseInfo(f"Wan 2.1 I2V {size}", variant, dims, quant_of(ckpt),
                    all(m in ckpt for m in AUDIO_MARKERS))


def inspect_audio(ckpt: Checkpoint) -> AudioInfo:
    """Check ``ckpt`` holds the InfiniteTalk audio adapter; derive its dims."""
    keys = ckpt.keys()
    if "head.modulation" in ckpt and not all(m in ckpt for m in AUDIO_MARKERS):
        raise CheckpointError(ckpt.path, "this is a Wan base model, not the InfiniteTalk audio adapter",
                              found=f"{len(keys)} base-model tensors (head.modulation, blocks.N.self_attn.*)",
                              expected="the InfiniteTalk file (330 keys: audio_proj.*, blocks.N.audio_cross_attn.*, "
                                       "blocks.N.norm_x.*)",
                              fix="select this file as the base model and an InfiniteTalk single/multi file "
                                  "(e.g. Wan2_1-InfiniteTalk-Single_fp16.safetensors) as the InfiniteTalk model")
    if not all(m in ckpt for m in AUDIO_MARKERS):
        what = "a LoRA" if _looks_like_lora(keys) else "an unknown model"
        raise CheckpointError(ckpt.path, f"not an InfiniteTalk audio adapter (looks like {what})",
                              keys=sorted(keys)[:5], expected="audio_proj.proj1.weight and blocks.N.audio_cross_attn.*",
                              fix="choose the InfiniteTalk single or multi file (models/diffusion_models or model_patches)")
    if any(".audio_cross_attn.q_norm" in k or ".audio_cross_attn.k_norm" in k for k in keys):
        raise CheckpointError(ckpt.path, "this audio adapter has q_norm/k_norm (LongCat-Avatar), not InfiniteTalk",
                              keys=[k for k in keys if "q_norm" in k][:5],
                              fix="use the InfiniteTalk single/multi weights")
    kv = _shape(ckpt, "blocks.0.audio_cross_attn.kv_linear.weight", 2)
    proj1 = _shape(ckpt, "audio_proj.proj1.weight", 2)
    proj3 = _shape(ckpt, "audio_proj.proj3.weight", 2)
    out_dim = _shape(ckpt, "audio_proj.norm.weight", 1)[0]
    dims = dict(dim=kv[0] // 2, num_layers=count_blocks(keys), intermediate_dim=proj1[0], output_dim=out_dim,
                context_tokens=proj3[0] // out_dim, audio_in=proj1[1],
                audio_in_vf=_shape(ckpt, "audio_proj.proj1_vf.weight", 2)[1])
    name = ckpt.name.lower()  # single and multi share one format: only the name tells them apart
    kind = "multi" if "multi" in name else "single" if "single" in name else "single or multi"
    return AudioInfo(kind, dims, quant_of(ckpt))


def check_compatible(base: Checkpoint, b: BaseInfo, audio: Checkpoint, a: AudioInfo) -> None:
    """The adapter must have been made for this base (same width and block count)."""
    if (a.dims["dim"], a.dims["num_layers"]) != (b.dims["dim"], b.dims["num_layers"]):
        raise CheckpointError(audio.path, "InfiniteTalk adapter does not fit this base model",
                              found=f"adapter for dim {a.dims['dim']} with {a.dims['num_layers']} blocks",
                              expected=f"dim {b.dims['dim']} with {b.dims['num_layers']} blocks ({base.name})",
                              fix="use the InfiniteTalk file made for Wan 2.1 I2V 14B with a 14B base model")
