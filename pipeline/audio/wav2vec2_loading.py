"""Load wav2vec2-base checkpoints into ``Wav2Vec2Encoder``.

Layouts:
* a Hugging Face folder (TencentGameMate/chinese-wav2vec2-base): ``config.json`` plus
  ``model.safetensors`` or ``pytorch_model.bin`` (read by the pack's one checkpoint reader,
  ``loading.reader.read_state_dict``: pickles with ``weights_only=True``); its
  ``preprocessor_config.json`` decides input normalisation (``do_normalize``, HF default true);
  a weights file inside such a folder is treated as the folder;
* a single file (Kijai's ``wav2vec2-chinese-base_fp16.safetensors``, ComfyUI ``audio_encoders``
  files, a bare ``.bin``/``.pt``): config inferred from the tensors, normalisation off (as
  Kijai's and ComfyUI's loaders treat chinese-wav2vec2-base).
Keys may carry the ``wav2vec2.`` prefix (pre-training checkpoints) or not; the positional-conv
weight may be legacy ``weight_g``/``weight_v``, ``parametrizations.weight.original0/1``, or a
plain ``weight``. Pre-training heads (quantizer, project_q/hid, masked_spec_embed) are ignored.
"""
from __future__ import annotations

import json
import logging
import os
import re

import torch

from ..loading.errors import CheckpointError
from ..loading.reader import read_state_dict
from .wav2vec2 import Wav2Vec2Config, Wav2Vec2Encoder

log = logging.getLogger("infinitetalk_lipsync")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_IGNORED = re.compile(r"^(masked_spec_embed|quantizer\.|project_q\.|project_hid\.|lm_head\.|dropout_features)")
_POS = "encoder.pos_conv_embed.conv."


def canonical_keys(sd: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Strip the ``wav2vec2.`` prefix, drop pre-training heads, and map every weight-norm naming
    of the positional conv to ``weight_g`` / ``weight_v`` (our module's names)."""
    if any(k.startswith("wav2vec2.") for k in sd):
        sd = {k[len("wav2vec2."):]: v for k, v in sd.items() if k.startswith("wav2vec2.")}
    out = {k: v for k, v in sd.items() if not _IGNORED.match(k)}
    renames = {_POS + "parametrizations.weight.original0": _POS + "weight_g",
               _POS + "parametrizations.weight.original1": _POS + "weight_v"}
    for old, new in renames.items():
        if old in out:
            out[new] = out.pop(old)
    if _POS + "weight" in out:  # weight norm already folded in: g = ||w|| per kernel tap
        weight = out.pop(_POS + "weight")
        out[_POS + "weight_v"] = weight
        out[_POS + "weight_g"] = weight.float().norm(dim=(0, 1), keepdim=True).to(weight.dtype)
    if "encoder.layer_norm.weight" not in out or "feature_projection.projection.weight" not in out:
        raise CheckpointError(source, "not a wav2vec2 checkpoint (no 'encoder.layer_norm.weight' / "
                              "'feature_projection.projection.weight' keys)",
                              fix="choose a wav2vec2 file such as TencentGameMate/chinese-wav2vec2-base or "
                                  "wav2vec2-chinese-base_fp16.safetensors")
    return out


def infer_config(sd: dict[str, torch.Tensor], source: str) -> Wav2Vec2Config:
    """Config from canonical tensors. Strides are not stored: the base strides are assumed for the
    standard 7-layer CNN; heads are hidden/64 (wav2vec2's head width)."""
    hidden = sd["encoder.layer_norm.weight"].shape[0]
    layers = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k))), default=-1)
    convs = sorted({int(m.group(1)) for k in sd if (m := re.match(r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight", k))})
    if hidden == 1024:
        raise CheckpointError(source, "hidden size 1024 looks like wav2vec2-large (pre-norm layout), which is not "
                              "supported", fix="use a wav2vec2-base checkpoint such as chinese-wav2vec2-base")
    if len(convs) != 7 or layers < 1 or _POS + "weight_v" not in sd:
        raise CheckpointError(source, f"unexpected wav2vec2 layout ({len(convs)} conv layers, {layers} transformer "
                              "layers)", fix="put its config.json beside it (Hugging Face folder) or use wav2vec2-base")
    conv_weights = [sd[f"feature_extractor.conv_layers.{i}.conv.weight"] for i in convs]
    pos_v = sd[_POS + "weight_v"]
    config = Wav2Vec2Config(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
        intermediate_size=sd["encoder.layers.0.feed_forward.intermediate_dense.weight"].shape[0],
        conv_dim=tuple(w.shape[0] for w in conv_weights), conv_kernel=tuple(w.shape[2] for w in conv_weights),
        conv_bias="feature_extractor.conv_layers.0.conv.bias" in sd,
        num_conv_pos_embeddings=pos_v.shape[2], num_conv_pos_embedding_groups=hidden // pos_v.shape[1],
        feat_extract_norm="layer" if "feature_extractor.conv_layers.1.layer_norm.weight" in sd else "group")
    config.check(source)
    return config


def _preprocessor_normalize(folder: str) -> bool:
    path = os.path.join(folder, "preprocessor_config.json")
    if not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as handle:
        return bool(json.load(handle).get("do_normalize", True))


def resolve(path: str) -> tuple[str, str | None, bool]:
    """path (file or folder) -> (weights file, config.json or None, normalize_input)."""
    if os.path.isfile(path) and os.path.basename(path).endswith(".json"):
        path = os.path.dirname(path)
    if os.path.isfile(path):
        folder = os.path.dirname(path)
        if os.path.isfile(os.path.join(folder, "config.json")) and os.path.basename(path) in WEIGHT_FILES:
            return path, os.path.join(folder, "config.json"), _preprocessor_normalize(folder)
        return path, None, False
    if os.path.isdir(path):
        for name in WEIGHT_FILES:
            if os.path.isfile(os.path.join(path, name)):
                config = os.path.join(path, "config.json")
                return (os.path.join(path, name), config if os.path.isfile(config) else None,
                        _preprocessor_normalize(path))
        raise FileNotFoundError(f"{path}: folder has none of {', '.join(WEIGHT_FILES)}; download the wav2vec2 "
                                f"weights into it (e.g. TencentGameMate/chinese-wav2vec2-base).")
    raise FileNotFoundError(f"wav2vec2 checkpoint '{path}' does not exist.")


def load_wav2vec2(path: str, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  normalize_input: bool | None = None, config: Wav2Vec2Config | None = None) -> Wav2Vec2Encoder:
    """Build and load a ``Wav2Vec2Encoder`` from ``path`` (HF folder or single file), in eval mode.

    normalize_input: None = from preprocessor_config.json (off for single files); True/False overrides.
    config: overrides config.json / inference (a single file cannot say its head count; hidden/64 is assumed).
    Raises CheckpointError naming the file on missing, unexpected-shape or foreign tensors.
    """
    weights, config_path, normalize = resolve(path)
    sd = canonical_keys(read_state_dict(weights), weights)
    if config is None:
        config = Wav2Vec2Config.from_json(config_path) if config_path else infer_config(sd, weights)
    with torch.device("meta"):
        model = Wav2Vec2Encoder(config, normalize if normalize_input is None else normalize_input)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise CheckpointError(weights, f"{len(missing)} wav2vec2 tensors missing, e.g. {missing[:4]}",
                              fix="the file is incomplete or for another architecture; download it again")
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(s)})" for k, s in expected.items() if sd[k].shape != s]
    if wrong:
        raise CheckpointError(weights, f"tensor shapes do not match its config: {'; '.join(wrong[:4])}",
                              fix="use the config.json that came with these weights")
    extra = sorted(set(sd) - set(expected))
    if extra:
        log.warning("%s: ignoring %d unknown tensors, e.g. %s", weights, len(extra), extra[:4])
    model.load_state_dict({k: sd[k].to(device=device, dtype=dtype) for k in expected}, assign=True)
    return model.eval().requires_grad_(False)
