"""``load_dit``: checkpoint files -> a ready InfiniteTalkDiT plus a report of what was found."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import torch

from . import block_swap as block_swap_mod
from .detect import BLOCK_KEY, check_compatible, inspect_audio, inspect_base
from .errors import CheckpointError
from .lora import read_lora
from .populate import expected_shapes, populate
from .reader import open_checkpoint

FP8_MODES = ("upcast", "scaled_mm")
LORA_MODES = ("merge", "on_the_fly")


@dataclass
class LoadReport:
    base_file: str
    family: str
    variant: str
    base_quant: str
    audio_file: str | None
    audio_kind: str
    audio_quant: str
    compute_dtype: str
    fp8_mode: str
    linear_storage: dict
    blocks_to_swap: int
    attention: str
    loras: list = field(default_factory=list)  # dicts: name, strength, applied, unmatched, mode

    def text(self) -> str:
        lines = [f"base: {self.base_file} -> {self.family}, {self.variant}; weights {self.base_quant}"]
        if self.audio_file:
            lines.append(f"InfiniteTalk: {self.audio_file} -> {self.audio_kind}; weights {self.audio_quant}")
        lines.append(f"compute {self.compute_dtype}, fp8 {self.fp8_mode}, attention {self.attention}, "
                     f"block swap {self.blocks_to_swap}")
        lines.append("Linear weights: " + ", ".join(f"{n} {k}" for k, n in sorted(self.linear_storage.items())))
        for l in self.loras:
            line = f"LoRA {l['name']} x{l['strength']:g}: {l['applied']} weights patched ({l['mode']})"
            if l["unmatched"]:
                line += f"; {len(l['unmatched'])} keys matched nothing: " + ", ".join(l["unmatched"][:5])
            if l.get("skipped"):
                line += (f"; {l['skipped']} modulation diffs (diff_m) not applied, as the official loader and "
                         f"ComfyUI core")
            lines.append(line)
        return "\n".join(lines)


def derive_config(base_dims: dict, audio_dims: dict | None, num_heads: int | None) -> dict:
    """Official hyper-parameters from the weights' shapes (heads from the 128 head dim unless given)."""
    cfg = {k: base_dims[k] for k in ("dim", "ffn_dim", "num_layers", "in_dim", "out_dim", "freq_dim", "text_dim",
                                     "patch_size")}
    cfg["num_heads"] = num_heads or max(1, base_dims["dim"] // 128)
    if audio_dims:
        cfg.update(intermediate_dim=audio_dims["intermediate_dim"], output_dim=audio_dims["output_dim"],
                   context_tokens=audio_dims["context_tokens"])
    return cfg


def build_model(cfg: dict):
    """InfiniteTalkDiT on the meta device (no memory), the 14B constants for everything not derived."""
    from ..dit import WAN_I2V_14B, InfiniteTalkDiT  # imported here: detection and tests need no DiT

    names = {f.name for f in dataclasses.fields(WAN_I2V_14B)}
    config = dataclasses.replace(WAN_I2V_14B, **{k: v for k, v in cfg.items() if k in names})
    with torch.device("meta"):
        return InfiniteTalkDiT(config)


def _dtype(d) -> torch.dtype:
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if isinstance(d, str):
        if d not in table:
            raise ValueError(f"compute_dtype must be one of {list(table)}, got '{d}'")
        return table[d]
    if d not in table.values():
        raise ValueError(f"compute_dtype must be bfloat16, float16 or float32, got {d}")
    return d


def _recognise(base_path, infinitetalk_path):
    """Open and recognise both files -> (base, base info, adapter or None, adapter info or None)."""
    base = open_checkpoint(base_path)
    binfo = inspect_base(base)
    audio = ainfo = None
    if infinitetalk_path:
        audio = open_checkpoint(infinitetalk_path)
        ainfo = inspect_audio(audio)
        check_compatible(base, binfo, audio, ainfo)
    elif not binfo.has_audio:
        raise CheckpointError(base_path, "no InfiniteTalk file given and the base model has no audio modules",
                              fix="select the InfiniteTalk single or multi file in the loader")
    return base, binfo, audio, ainfo


def dit_config(base_path, infinitetalk_path=None, num_heads=None):
    """The DiTConfig ``load_dit`` would build for these files, reading only their headers."""
    _, binfo, _, ainfo = _recognise(base_path, infinitetalk_path)
    return build_model(derive_config(binfo.dims, ainfo.dims if ainfo else None, num_heads)).config


def load_dit(base_path, infinitetalk_path=None, *, compute_dtype=torch.bfloat16, fp8_mode="upcast", loras=(),
             device=None, offload_device="cpu", blocks_to_swap=0, attention="sdpa", lora_mode="merge",
             num_heads=None, model_builder=None):
    """Load the base Wan 2.1 I2V DiT and the InfiniteTalk adapter into one model.

    loras: [(path, strength)]; device: compute device (default cuda if available);
    blocks_to_swap: blocks kept on ``offload_device`` and streamed in (0 = all on device);
    num_heads: only for non-14B test models (default dim/128); model_builder(cfg_dict) ->
    meta model (the real InfiniteTalkDiT unless a test passes another contract-following
    module). Returns (model in eval mode, LoadReport). Raises CheckpointError/
    FileNotFoundError/ValueError with an actionable message; never returns a half-loaded model."""
    dtype = _dtype(compute_dtype)
    if fp8_mode not in FP8_MODES:
        raise ValueError(f"fp8_mode must be one of {FP8_MODES}, got '{fp8_mode}'")
    if lora_mode not in LORA_MODES:
        raise ValueError(f"lora_mode must be one of {LORA_MODES}, got '{lora_mode}'")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    offload_device = torch.device(offload_device)

    base, binfo, audio, ainfo = _recognise(base_path, infinitetalk_path)
    sources = [base] + ([audio] if audio else [])
    model = (model_builder or build_model)(derive_config(binfo.dims, ainfo.dims if ainfo else None, num_heads))
    n_blocks = len(model.blocks)
    if not 0 <= blocks_to_swap <= n_blocks:
        raise ValueError(f"blocks_to_swap must be between 0 and {n_blocks}, got {blocks_to_swap}")
    shapes = expected_shapes(model)
    results, lora_report = [], []
    for path, strength in loras:
        name = os.path.basename(str(path))
        if float(strength) == 0.0:
            lora_report.append(dict(name=name, strength=0.0, applied=0, unmatched=[], mode="skipped (strength 0)"))
            continue
        result = read_lora(path, strength, shapes)
        results.append(result)
        lora_report.append(dict(name=name, strength=float(strength), applied=result.applied,
                                unmatched=result.unmatched, skipped=len(result.skipped), mode=lora_mode))

    first_swapped = n_blocks - blocks_to_swap

    def placement(key):
        m = BLOCK_KEY.match(key)
        return offload_device if (m and int(m.group(1)) >= first_swapped) else device

    kinds = populate(model, sources, compute_dtype=dtype, placement=placement, loras=results, lora_mode=lora_mode,
                     fp8_scaled_mm=fp8_mode == "scaled_mm")
    if any(k.startswith(("gguf", "fp8")) for k in kinds):
        for entry in lora_report:
            if entry["applied"]:
                entry["mode"] = "on the fly for quantised weights" + (", merged into float ones" if lora_mode == "merge" else "")
    block_swap_mod.install(model, blocks_to_swap, device)
    if hasattr(model, "set_attention_backend"):
        attention = model.set_attention_backend(attention)  # falls back to sdpa (with a warning) if unavailable
    model.eval().requires_grad_(False)
    report = LoadReport(
        base_file=base.name, family=binfo.family, variant=binfo.variant, base_quant=binfo.quant.label,
        audio_file=audio.name if audio else None,
        audio_kind=f"InfiniteTalk {ainfo.kind} (single and multi share one format; named by file)" if ainfo else "",
        audio_quant=ainfo.quant.label if ainfo else "", compute_dtype=str(dtype).split(".")[-1], fp8_mode=fp8_mode,
        linear_storage=dict(kinds), blocks_to_swap=blocks_to_swap, attention=attention, loras=lora_report)
    return model, report
