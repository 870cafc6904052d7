"""Tiny wav2vec2 checkpoints in every on-disk layout, built from the golden tiny weights
(real chinese-wav2vec2-base key names: ``wav2vec2.`` prefix, legacy weight_g/weight_v)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

import golden

POS = "wav2vec2.encoder.pos_conv_embed.conv."


def golden_state_dict() -> dict[str, torch.Tensor]:
    return dict(golden.tensors("wav2vec_tiny_weights.safetensors"))


def golden_config() -> dict:
    return golden.manifest()["files"]["wav2vec_tiny_weights.safetensors"]["config"]


def pretraining_heads(config: dict) -> dict[str, torch.Tensor]:
    """The Wav2Vec2ForPreTraining extras that the real pytorch_model.bin carries (ignored on load)."""
    h, groups, per = config["hidden_size"], config["num_codevector_groups"], 8
    return {"quantizer.codevectors": torch.zeros(1, groups * per, config["codevector_dim"] // groups),
            "quantizer.weight_proj.weight": torch.zeros(groups * per, config["conv_dim"][-1]),
            "quantizer.weight_proj.bias": torch.zeros(groups * per),
            "project_hid.weight": torch.zeros(config["proj_codevector_dim"], h),
            "project_hid.bias": torch.zeros(config["proj_codevector_dim"]),
            "project_q.weight": torch.zeros(config["proj_codevector_dim"], config["codevector_dim"]),
            "project_q.bias": torch.zeros(config["proj_codevector_dim"])}


def write_hf_folder(folder: Path, fmt: str = "bin", do_normalize: bool | None = True) -> Path:
    """HF folder: config.json, preprocessor_config.json (omitted when do_normalize is None) and
    pytorch_model.bin (fmt 'bin') or model.safetensors (fmt 'safetensors')."""
    folder.mkdir(parents=True, exist_ok=True)
    config = golden_config()
    (folder / "config.json").write_text(json.dumps(config))
    if do_normalize is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(
            {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "sampling_rate": 16000,
             "padding_value": 0.0, "do_normalize": do_normalize, "return_attention_mask": False}))
    sd = {**golden_state_dict(), **pretraining_heads(config)}
    if fmt == "bin":
        torch.save(sd, folder / "pytorch_model.bin")
    else:
        save_file(sd, str(folder / "model.safetensors"))
    return folder


def write_single_file(path: Path, *, prefix: bool = True, dtype: torch.dtype = torch.float16,
                      pos_names: str = "legacy") -> Path:
    """One safetensors file (Kijai / ComfyUI audio_encoders style).

    pos_names: 'legacy' (weight_g/weight_v), 'parametrizations' (original0/1) or 'folded' (weight)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = golden_state_dict()
    g, v = sd.pop(POS + "weight_g"), sd.pop(POS + "weight_v")
    if pos_names == "legacy":
        sd[POS + "weight_g"], sd[POS + "weight_v"] = g, v
    elif pos_names == "parametrizations":
        sd[POS + "parametrizations.weight.original0"], sd[POS + "parametrizations.weight.original1"] = g, v
    else:
        sd[POS + "weight"] = torch._weight_norm(v, g, 2)
    if not prefix:
        sd = {k[len("wav2vec2."):]: t for k, t in sd.items()}
    save_file({k: t.to(dtype).contiguous() for k, t in sd.items()}, str(path))
    return path


def random_model(normalize_input: bool = True, seed: int = 0):
    """A tiny randomly initialised encoder (no golden files needed)."""
    from infinitetalk_lipsync.pipeline.audio import Wav2Vec2Config, Wav2Vec2Encoder

    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    model = Wav2Vec2Encoder(config, normalize_input)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return model.eval()


def speech_like(seconds: float, rate: int = 16000, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """[1, C, T] chirp + noise, about -20 LUFS, like a ComfyUI AUDIO waveform."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(int(round(seconds * rate)), dtype=torch.float64) / rate
    tone = 0.1 * torch.sin(2 * torch.pi * (150 + 400 * t) * t)
    waves = [tone * (1 + 0.3 * c) + 0.02 * torch.randn(t.shape, generator=generator, dtype=torch.float64)
             for c in range(channels)]
    return torch.stack(waves)[None].float()
