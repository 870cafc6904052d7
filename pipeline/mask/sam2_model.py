"""Load a SAM2 / SAM2.1 checkpoint file into ``transformers.Sam2VideoModel``.

transformers (>= 4.56, which added Sam2VideoModel) is imported only here and only when a model
is loaded, so the rest of the pack works without it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..loading.errors import CheckpointError
from ..loading.reader import read_state_dict as read_checkpoint
from .sam2_keys import HF_MARKER, META_MARKER, hf_config_kwargs, to_transformers_keys

TRANSFORMERS_HINT = 'pip install "transformers>=4.56"'


class Sam2UnavailableError(ImportError):
    """transformers with Sam2VideoModel is not installed."""

    __module__ = "infinitetalk"  # ComfyUI shows "infinitetalk.Sam2UnavailableError", not the install path


@dataclass
class Sam2Model:
    """A loaded SAM2 video model. ``model`` is a ``transformers.Sam2VideoModel`` in eval mode;
    ``name`` the size (tiny/small/base_plus/large); ``dtype`` its compute dtype."""
    model: torch.nn.Module
    name: str
    dtype: torch.dtype

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)


def _transformers():
    try:
        import transformers
        from transformers import Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoModel, Sam2VisionConfig  # noqa: F401
    except ImportError:
        version = ""
        try:
            import transformers
            version = f" (found transformers {transformers.__version__}, which has no Sam2VideoModel)"
        except ImportError:
            pass
        raise Sam2UnavailableError(
            f"SAM2 masks need transformers 4.56 or newer{version}: {TRANSFORMERS_HINT}. "
            f"Without it, leave the sam2 input empty to use the face-box ellipse mask.") from None
    return transformers


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a SAM2 file: safetensors (Kijai), or a torch ``.pt``/``.pth`` holding
    ``{"model": state_dict}`` (Meta) or a bare state dict (the pack's one checkpoint reader)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SAM2 checkpoint '{path}' does not exist.")
    sd = read_checkpoint(path)
    if META_MARKER not in sd and HF_MARKER not in sd:
        raise CheckpointError(path, f"not a SAM2 checkpoint (no '{META_MARKER}')",
                              fix="put Meta's sam2.1_hiera_*.pt or Kijai's sam2.1_hiera_*.safetensors in models/sam2")
    return sd


def build_config(sd_hf: dict[str, torch.Tensor]):
    """``Sam2VideoConfig`` for a transformers-layout state dict (size read from its shapes)."""
    tf = _transformers()
    kw = hf_config_kwargs(sd_hf)
    backbone = tf.Sam2HieraDetConfig(**kw["backbone"])
    vision = tf.Sam2VisionConfig(backbone_config=backbone, **kw["vision"])
    return kw["name"], tf.Sam2VideoConfig(vision_config=vision, **kw["model"])


def load_sam2(path: str, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Sam2Model:
    """Load a SAM2 file (any of the 4 sizes, SAM2 or SAM2.1) -> Sam2Model on ``device`` in ``dtype``.

    Weights are loaded strictly: a missing or unexpected tensor raises CheckpointError naming it."""
    tf = _transformers()
    sd = to_transformers_keys(read_state_dict(path))
    name, config = build_config(sd)
    with torch.device("meta"):
        model = tf.Sam2VideoModel(config)
    missing, unexpected = _check_keys(model, sd)
    if missing or unexpected:
        raise CheckpointError(path, f"does not match SAM2 {name}: missing {missing[:5]}, unexpected {unexpected[:5]}",
                              fix="the file is incomplete or not a SAM2/SAM2.1 checkpoint; download it again")
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True, assign=True)
    # Buffers that are not in the checkpoint (rotary tables, position grids) are still on meta.
    _materialise_buffers(model, config)
    return Sam2Model(model.to(device=device, dtype=dtype).eval(), name, dtype)


def _check_keys(model: torch.nn.Module, sd: dict) -> tuple[list[str], list[str]]:
    expected = set(model.state_dict())
    return sorted(expected - set(sd)), sorted(set(sd) - expected)


def _materialise_buffers(model: torch.nn.Module, config) -> None:
    """Fill the non-persistent buffers (rotary tables, position ids) that building on the meta device
    left empty, by building the few top-level submodules that own them for real on the CPU."""
    owners = {name.split(".")[0] for name, buf in model.named_buffers() if buf.is_meta}
    for owner in sorted(owners):
        fresh = type(getattr(model, owner))(config)
        for name, buf in fresh.named_buffers():
            path = f"{owner}.{name}".split(".")
            module = model.get_submodule(".".join(path[:-1]))
            if getattr(module, path[-1]).is_meta:
                module.register_buffer(path[-1], buf, persistent=name in dict(fresh.state_dict()))
