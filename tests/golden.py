"""Access to ``shared/golden``: the official code's outputs on seeded tiny weights.

Tests take names, shapes and configs from ``manifest.json``, never from numbers
copied into the test. The folder is found through ``INFINITETALK_SHARED`` or as
``shared/`` beside this checkout (or beside any parent folder).
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


def shared_dir() -> Path | None:
    env = os.environ.get("INFINITETALK_SHARED")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared"
        if (candidate / "golden" / "manifest.json").is_file():
            return candidate
    return None


def golden_dir() -> Path:
    """The golden folder, or skip (fail under CI, where it must be present)."""
    root = shared_dir()
    if root is None:
        message = "shared/golden not found: set INFINITETALK_SHARED=/path/to/shared"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root / "golden"


def media(name: str) -> Path:
    """A file of shared/media (real speech and video), or skip."""
    root = shared_dir()
    path = None if root is None else root / "media" / name
    if path is None or not path.is_file():
        pytest.skip(f"shared/media/{name} not found")
    return path


@lru_cache(maxsize=None)
def manifest() -> dict:
    return json.loads((golden_dir() / "manifest.json").read_text())


@lru_cache(maxsize=None)
def tensors(file: str) -> dict[str, torch.Tensor]:
    """Every tensor of golden file ``file`` (cloned: aligned buffers, see the golden README)."""
    return {k: v.clone() for k, v in load_file(str(golden_dir() / file)).items()}


def case(name: str) -> dict:
    """``manifest['cases'][name]`` (configs and scalar tables)."""
    return manifest()["cases"][name]


def assert_close(actual: torch.Tensor, ref: torch.Tensor, rel: float = 1e-5, what: str = "") -> float:
    """Assert |actual - ref| <= rel * max(1, max|ref|); return the max abs error."""
    actual = actual.detach().to(torch.float64).cpu()
    ref = ref.detach().to(torch.float64).cpu()
    assert actual.shape == ref.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(ref.shape)}"
    err = (actual - ref).abs().max().item() if ref.numel() else 0.0
    bound = rel * max(1.0, ref.abs().max().item() if ref.numel() else 0.0)
    assert err <= bound, f"{what}: max |diff| {err:.3e} > {bound:.3e}"
    return err
