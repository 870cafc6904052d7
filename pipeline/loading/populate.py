"""Fill a meta-device model from checkpoint views, tensor by tensor.

Every parameter comes straight from the memory-mapped file: it is cast/moved once to
its final dtype and device (a zero-copy view when both already match), so no step ever
holds two full copies of the model. Linear layers whose stored weight is quantised
(GGUF blocks, fp8) are replaced by the matching :mod:`.quant_linear` module and stay
quantised in memory.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from . import lora as lora_mod
from .detect import is_aux_key
from .errors import CheckpointError
from .fp8 import Fp8Layout, Fp8Weight
from .quant_linear import FloatLinear, Fp8Linear, GGUFLinear
from .reader import GGUFWeight


def expected_shapes(model: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}


def index_sources(sources) -> dict:
    """{key: Fp8Layout} over the checkpoints, later files overriding earlier ones."""
    owner = {}
    for ckpt in sources:
        layout = Fp8Layout(ckpt) if ckpt.format != "gguf" else None
        for key in ckpt.keys():
            if not is_aux_key(key):
                owner[key] = (ckpt, layout)
    return owner


def check_keys(owner: dict, expected: dict, sources) -> None:
    """Missing, unexpected or wrongly shaped tensors -> one CheckpointError naming the first ones."""
    names = ", ".join(c.name for c in sources)
    missing = [k for k in expected if k not in owner]
    if missing:
        audio = all(".audio_cross_attn." in k or ".norm_x." in k or k.startswith("audio_proj.") for k in missing)
        fix = ("add the InfiniteTalk single/multi file (the base model has no audio modules)" if audio else
               "the file is incomplete or made for another model; download it again")
        path = sources[0].path if len(sources) == 1 or audio else None
        raise CheckpointError(path, f"{len(missing)} model tensors are missing from {names}", keys=missing, fix=fix)
    unexpected = [k for k in owner if k not in expected]
    if unexpected:
        ckpt = owner[unexpected[0]][0]
        raise CheckpointError(ckpt.path, f"{len(unexpected)} tensors do not belong to the InfiniteTalk Wan 2.1 I2V model",
                              keys=unexpected, fix="use the official Wan 2.1 I2V 14B and InfiniteTalk files "
                                                   "(extra modules such as VACE or LoRA keys cannot be loaded here)")
    wrong = [key for key, shape in expected.items() if owner[key][0].shape(key) != shape]
    if wrong:
        raise CheckpointError(owner[wrong[0]][0].path, "tensor shapes do not match the model",
                              keys=[f"{k} {owner[k][0].shape(k)} (model {expected[k]})" for k in wrong],
                              fix="the file belongs to a different model size/variant; use Wan 2.1 I2V 14B weights")


def _fetch(owner, key):
    """The stored tensor: torch.Tensor, GGUFWeight or Fp8Weight."""
    ckpt, layout = owner[key]
    if layout is not None and key.endswith(".weight"):
        return layout.weight(key[: -len(".weight")])
    value = ckpt.get(key)
    if isinstance(value, torch.Tensor) and value.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        return Fp8Weight(value, None)
    return value


def _dense(value, device) -> torch.Tensor:
    """Any stored form -> a plain tensor (float32 for quantised forms) on ``device``."""
    if isinstance(value, GGUFWeight):
        return value.dequantize(torch.float32, device)
    if isinstance(value, Fp8Weight):
        return value.dense(torch.float32, device)
    return value


def _finish(t: torch.Tensor, patches, device, dtype) -> torch.Tensor:
    """Merge float LoRA patches (in float32) and cast/move once."""
    if patches:
        w = t.to(device=device, dtype=torch.float32)
        t = w + lora_mod.delta(patches, w.shape, w.device)
    if t.is_floating_point():
        return t.to(device=device, dtype=dtype)
    return t.to(device=device)


def _set_child(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def populate(model: nn.Module, sources, *, compute_dtype, placement, loras=(), lora_mode="merge",
             fp8_scaled_mm=False) -> Counter:
    """Load ``sources`` (Checkpoints, later ones override earlier keys) into meta-built ``model``.

    placement(key) -> device for each tensor; loras: LoRAResults (their ``patches`` are
    consumed); lora_mode ``merge`` bakes LoRAs into float weights, ``on_the_fly`` keeps them
    separate (quantised weights always use on-the-fly). Returns a Counter of how each
    Linear weight is held (e.g. ``{'float': 10, 'gguf Q4_K': 240}``)."""
    expected = expected_shapes(model)
    owner = index_sources(sources)
    check_keys(owner, expected, sources)
    patches: dict = {}
    for result in loras:
        for key, plist in result.patches.items():
            patches.setdefault(key, []).extend(plist)
    kinds = Counter()
    done = set()
    linears = [(n, m) for n, m in model.named_modules() if type(m) is nn.Linear]
    for name, mod in linears:
        wkey, bkey = f"{name}.weight", f"{name}.bias"
        done.update((wkey, bkey))
        device = placement(wkey)
        value = _fetch(owner, wkey)
        bias = None
        if mod.bias is not None:
            bias = _finish(_dense(_fetch(owner, bkey), device), patches.pop(bkey, None), device, compute_dtype)
        wpatches = patches.pop(wkey, None)
        # Only the on-the-fly forms keep the LoRA factors (on the weight's device); merged float
        # weights bake them in below, so their stacks never leave the host.
        on_the_fly = wpatches and (isinstance(value, (GGUFWeight, Fp8Weight)) or lora_mode == "on_the_fly")
        stack = lora_mod.PatchStack(wpatches).to(device) if on_the_fly else None
        if isinstance(value, GGUFWeight):
            new = GGUFLinear(value.raw.to(device), value.qtype, value.shape, bias, compute_dtype, stack)
            kinds[f"gguf {value.type_name}"] += 1
        elif isinstance(value, Fp8Weight):
            new = Fp8Linear(value.weight.to(device), None if value.scale is None else value.scale.to(device), bias,
                            compute_dtype, stack, scaled_mm=fp8_scaled_mm and value.fp8_matmul_ok)
            kinds[f"fp8 {str(value.weight.dtype).split('.')[-1]}" + (" scaled" if value.scale is not None else "")] += 1
        elif stack is not None and lora_mode == "on_the_fly":
            new = FloatLinear(value.to(device), bias, compute_dtype, stack)  # file dtype: deltas add to the unrounded weight
            kinds["float + on-the-fly LoRA"] += 1
        else:
            mod.weight = nn.Parameter(_finish(value, wpatches, device, compute_dtype), requires_grad=False)
            if bias is not None:
                mod.bias = nn.Parameter(bias, requires_grad=False)
            kinds["float"] += 1
            continue
        _set_child(model, name, new)
    for key in expected:
        if key in done:
            continue
        prefix, _, attr = key.rpartition(".")
        mod = model.get_submodule(prefix) if prefix else model
        device = placement(key)
        t = _finish(_dense(_fetch(owner, key), device), patches.pop(key, None), device, compute_dtype)
        if attr in mod._parameters:
            mod._parameters[attr] = nn.Parameter(t, requires_grad=False)
        else:
            mod._buffers[attr] = t
    if patches:  # read_lora only returns keys of the model, so this is a programming error
        raise RuntimeError(f"LoRA patches left unapplied: {sorted(patches)[:5]}")
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"model tensors not loaded (still on meta): {left[:5]}")
    return kinds
