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


def _audio_is_zero(name: str) -> bool:
    return not golden.tensors("dit_tiny_cases.safetensors")[f"{name}.audio"].any()


def case_for(role: str) -> str:
    """The first golden DiT case playing ``role``, read from the manifest and the data (names differ by set):
    'one' = 1 speaker with audio, 'two' = 2 speakers (L-RoPE path), 'zero' = the drop-audio branch
    (one all-zero speaker)."""
    for c in golden.case("a_dit_tiny")["cases"]:
        zero = _audio_is_zero(c["name"])
        if (role == "one" and c["human_num"] == 1 and not zero) or (role == "two" and c["human_num"] == 2) \
                or (role == "zero" and zero):
            return c["name"]
    raise AssertionError(f"the golden set has no DiT case of role {role!r}")
