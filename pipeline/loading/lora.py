"""LoRA files -> per-parameter weight deltas.

Spellings understood (after the reader strips ``diffusion_model.`` / ``model.diffusion_model.``):
ComfyUI "extract" format (``M.lora_down.weight`` / ``M.lora_up.weight`` / ``M.alpha``, ``M.diff``
for full weight deltas, ``M.diff_b`` for biases; ``M.diff_m`` modulation deltas are read but not
applied, as the official loader and ComfyUI core do, and reported), PEFT
(``M.lora_A[.default].weight`` / ``M.lora_B[...]``), ``M.lora.down/up.weight``, and kohya
(``lora_unet_blocks_0_self_attn_q.*``, also Wan-Fun's ``lora_unet__...``) with
``transformer.`` / ``base_model.model.`` prefixes.

Math: ``dW = strength * (alpha / rank if alpha else 1) * up @ down``; ``diff`` adds
``strength * diff``. Deltas are summed in float32 and added to the float32 weight before
rounding to the compute dtype, merged or on the fly alike (so both give identical weights).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import CheckpointError
from .reader import open_checkpoint

_DOWN = (".lora_down.weight", ".lora_A.weight", ".lora_A.default.weight", ".lora.down.weight")
_UP = (".lora_up.weight", ".lora_B.weight", ".lora_B.default.weight", ".lora.up.weight")
_OTHER = (".alpha", ".diff_b", ".diff_m", ".diff")
_MODULE_PREFIXES = ("transformer.", "base_model.model.", "lora_unet_", "lycoris_")


@dataclass
class Patch:
    """One weight delta: ``scale * up @ down`` (up [out, r], down [r, in...]) or ``scale * diff``."""
    scale: float
    up: torch.Tensor | None = None
    down: torch.Tensor | None = None
    diff: torch.Tensor | None = None


@dataclass
class LoRAResult:
    name: str
    strength: float
    patches: dict = field(default_factory=dict)  # param key -> [Patch]
    unmatched: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # modulation diffs (``diff_m``), deliberately not applied

    @property
    def applied(self) -> int:
        return len(self.patches)


def delta(patches, shape, device) -> torch.Tensor:
    """Sum of the patches' deltas, float32 [shape] on ``device``."""
    total = torch.zeros(shape, dtype=torch.float32, device=device)
    for p in patches:
        if p.diff is not None:
            total += p.scale * p.diff.to(device, torch.float32).reshape(shape)
        else:
            up = p.up.to(device, torch.float32).reshape(p.up.shape[0], -1)
            down = p.down.to(device, torch.float32).reshape(p.down.shape[0], -1)
            total += p.scale * (up @ down).reshape(shape)
    return total


class PatchStack(nn.Module):
    """On-the-fly patches of one Linear; buffers so they follow the module between devices."""

    def __init__(self, patches):
        super().__init__()
        self.scales = []
        self.kinds = []
        for i, p in enumerate(patches):
            self.scales.append(p.scale)
            if p.diff is not None:
                self.kinds.append("diff")
                self.register_buffer(f"diff{i}", p.diff)
            else:
                self.kinds.append("lora")
                self.register_buffer(f"up{i}", p.up)
                self.register_buffer(f"down{i}", p.down)

    def patches(self):
        for i, (kind, scale) in enumerate(zip(self.kinds, self.scales)):
            if kind == "diff":
                yield Patch(scale, diff=getattr(self, f"diff{i}"))
            else:
                yield Patch(scale, up=getattr(self, f"up{i}"), down=getattr(self, f"down{i}"))

    def weight_delta(self, shape, device) -> torch.Tensor:
        return delta(list(self.patches()), shape, device)

    def output_delta(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ dW^T`` without forming dW (x [..., in] -> [..., out]), for fp8-matmul layers."""
        out = None
        for p in self.patches():
            if p.diff is not None:
                y = nn.functional.linear(x, p.diff.to(x.dtype)) * p.scale
            else:
                y = nn.functional.linear(nn.functional.linear(x, p.down.to(x.dtype)), p.up.to(x.dtype)) * p.scale
            out = y if out is None else out + y
        return out


def _split(key: str):
    for suffix in _DOWN:
        if key.endswith(suffix):
            return key[: -len(suffix)], "down"
    for suffix in _UP:
        if key.endswith(suffix):
            return key[: -len(suffix)], "up"
    for suffix in _OTHER:
        if key.endswith(suffix):
            return key[: -len(suffix)], suffix[1:]
    return None, None


def read_lora(path, strength: float, param_shapes: dict) -> LoRAResult:
    """Match the LoRA at ``path`` against the model's parameters ``{key: shape}``.

    Raises CheckpointError if the file is not a LoRA, matches nothing (a LoRA for another
    model) or has deltas of the wrong shape; keys that match no parameter are returned in
    ``unmatched``."""
    ckpt = open_checkpoint(path)
    result = LoRAResult(os.path.basename(str(path)), float(strength))
    modules = {k.rsplit(".", 1)[0] for k in param_shapes} | set(param_shapes)
    flat = {m.replace(".", "_"): m for m in modules}

    def resolve(name: str):
        stripped = True
        while stripped:  # prefixes may nest, e.g. base_model.model.transformer.
            stripped = False
            for prefix in _MODULE_PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix):].lstrip("_"), True
        return name if name in modules else flat.get(name)

    groups: dict = {}
    foreign = []
    for key in ckpt.keys():
        module, kind = _split(key)
        if module is None:
            foreign.append(key)
            continue
        groups.setdefault(module, {})[kind] = key
    if not groups:
        raise CheckpointError(path, "not a LoRA file (no lora_down/lora_up/lora_A/lora_B/diff keys)",
                              keys=sorted(ckpt.keys())[:5], fix="choose a LoRA from models/loras")
    wrong = []
    for module, parts in sorted(groups.items()):
        target = resolve(module)
        if target is None:
            result.unmatched.extend(parts.values())
            continue
        for kind, key in parts.items():
            if kind in ("down", "alpha"):
                continue
            if kind == "diff_m":
                # Modulation deltas: the official InfiniteTalk loader and ComfyUI core ignore them (only
                # Kijai's wrapper applies them); we follow the official result and report them.
                result.skipped.append(ckpt.original_key(key))
                continue
            if kind == "up":
                if "down" not in parts:
                    result.unmatched.append(key)
                    continue
                param = f"{target}.weight"
                up, down = ckpt.get(key), ckpt.get(parts["down"])
                rank = down.shape[0]
                scale = strength
                if "alpha" in parts:
                    scale *= float(ckpt.get(parts["alpha"]).float().reshape(-1)[0]) / rank
                shape = param_shapes.get(param)
                numel = up.shape[0] * down[0].numel() if up.dim() >= 1 else -1
                if shape is None or up.shape[0] != shape[0] or up.shape[1] != rank or numel != math.prod(shape):
                    wrong.append(f"{key} {tuple(up.shape)}x{tuple(down.shape)} vs {param} {shape}")
                    continue
                result.patches.setdefault(param, []).append(Patch(scale, up=up, down=down))
            else:
                if kind == "diff_b":
                    param = f"{target}.bias"
                else:
                    param = target if target in param_shapes else f"{target}.weight"
                diff = ckpt.get(key)
                shape = param_shapes.get(param)
                if shape is None or diff.numel() != math.prod(shape):
                    wrong.append(f"{key} {tuple(diff.shape)} vs {param} {shape}")
                    continue
                result.patches.setdefault(param, []).append(Patch(strength, diff=diff))
    result.unmatched = sorted(ckpt.original_key(k) for k in result.unmatched + foreign)
    if wrong:
        raise CheckpointError(path, "LoRA shapes do not fit this model (a LoRA for another model or size?)",
                              keys=wrong, fix="use a LoRA made for Wan 2.1 I2V 14B (e.g. lightx2v I2V 14B, FusionX I2V)")
    if not result.patches:
        raise CheckpointError(path, "this LoRA matches no weight of the model (a LoRA for another model?)",
                              keys=result.unmatched, expected="keys such as "
                              "diffusion_model.blocks.0.self_attn.q.lora_down.weight",
                              fix="use a LoRA made for Wan 2.1 I2V 14B")
    return result
