"""A stand-in for InfiniteTalkDiT that follows the loader contract (official parameter names,
plain nn.Linear children, ``blocks`` ModuleList, meta construction) — used to test loading
before and independently of the real DiT. Its ``probe`` applies every Linear to a fixed input."""
from __future__ import annotations

import zlib

import torch
from torch import nn
from torch.nn import functional as F


class _Node(nn.Module):
    pass


def build(shapes: dict) -> nn.Module:
    """Module tree with the keys of ``shapes`` ({key: shape}); 2-D ``X.weight`` -> nn.Linear X."""
    root = _Node()
    root.blocks = nn.ModuleList(_Node() for _ in range(1 + max(int(k.split(".")[1]) for k in shapes
                                                               if k.startswith("blocks."))))

    def node(path):
        mod = root
        for part in path:
            if part not in mod._modules:
                mod.add_module(part, _Node())
            mod = mod._modules[part]
        return mod

    for key, shape in sorted(shapes.items()):
        parts = key.split(".")
        if parts[-1] == "weight" and len(shape) == 2:
            parent = node(parts[:-2])
            parent.add_module(parts[-2], nn.Linear(shape[1], shape[0], bias=f"{key[:-7]}.bias" in shapes))
        elif parts[-1] == "bias" and f"{key[:-5]}.weight" in shapes and len(shapes[f"{key[:-5]}.weight"]) == 2:
            continue
        else:
            node(parts[:-1]).register_parameter(parts[-1], nn.Parameter(torch.empty(shape)))
    return root


def builder(ref: dict, expect_cfg: dict | None = None):
    """``model_builder`` for load_dit: checks the derived config, builds on meta."""
    shapes = {k: tuple(v.shape) for k, v in ref.items()}

    def make(cfg):
        if expect_cfg is not None:
            for k, v in expect_cfg.items():
                assert tuple(cfg[k]) == tuple(v) if isinstance(v, (list, tuple)) else cfg[k] == v, (k, cfg[k], v)
        with torch.device("meta"):
            return build(shapes)
    return make


def probe(model: nn.Module, seed=0) -> dict:
    """Every Linear applied to a seeded input (float32 out), every other tensor as float32."""
    out = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "in_features") and hasattr(mod, "out_features"):
            x = _input(name, mod.in_features, seed)
            out[name] = mod(x.to(mod.weight.dtype) if isinstance(mod, nn.Linear) else x).float()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        owner = name.rsplit(".", 1)[0]
        if owner not in out and t.is_floating_point():
            out[name] = t.float()
    return out


def probe_reference(ref: dict, seed=0, dtype=torch.float32) -> dict:
    """``probe`` computed from a plain state dict with weights rounded to ``dtype``."""
    with torch.device("meta"):
        model = build({k: tuple(v.shape) for k, v in ref.items()})
    model.load_state_dict({k: v.to(dtype) for k, v in ref.items()}, assign=True)
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            x = _input(name, mod.in_features, seed)
            out[name] = F.linear(x.to(dtype), mod.weight, mod.bias).float()
    for name, t in model.named_parameters():
        if name.rsplit(".", 1)[0] not in out:
            out[name] = t.float()
    return out


def _input(name: str, width: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()) + seed)
    return torch.randn(3, width, generator=g)
