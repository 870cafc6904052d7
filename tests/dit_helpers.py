"""Shared helpers for the DiT tests: the golden tiny model and its cases."""
from __future__ import annotations

from functools import lru_cache

import torch

import golden
from infinitetalk_lipsync.pipeline.dit import DiTConfig, InfiniteTalkDiT


def tiny_config() -> DiTConfig:
    return DiTConfig.from_dict(golden.case("a_dit_tiny")["config"])


def tiny_model(**kwargs) -> InfiniteTalkDiT:
    """The golden tiny DiT with the golden weights (strict load: proves the key names)."""
    model = InfiniteTalkDiT(tiny_config(), **kwargs).eval()
    model.load_state_dict(golden.tensors("dit_tiny_weights.safetensors"), strict=True)
    return model


@lru_cache(maxsize=None)
def shared_tiny_model() -> InfiniteTalkDiT:
    return tiny_model()


def case_names() -> list[str]:
    return [c["name"] for c in golden.case("a_dit_tiny")["cases"]]


def case_inputs(name: str) -> dict:
    """Model keyword arguments of golden case ``name`` (batch 1)."""
    c = golden.tensors("dit_tiny_cases.safetensors")
    return dict(x=c[f"{name}.x"][None], t=c[f"{name}.t"], context=c[f"{name}.context"][None],
                clip_fea=c["clip_fea"], y=c[f"{name}.y"], audio=c[f"{name}.audio"][None],
                speaker_masks=c[f"{name}.ref_target_masks"])
