"""Small Mel-Band RoFormer checkpoints in the real (Kijai / bs-roformer 0.3.10) key layout, for tests.

Depth 6 keeps the real file's 684 tensor names; widths are tiny so a chunk runs in a fraction of a second on CPU."""
from pathlib import Path

import torch
from safetensors.torch import save_file

# bs-roformer 0.3.10 MelBandRoformer arguments of Kijai's node, at a tiny width (the real file: dim 384, 8 x 64 heads).
SMALL = dict(dim=16, depth=6, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
             num_bands=60, dim_head=8, heads=1, attn_dropout=0.0, ff_dropout=0.0, flash_attn=True,
             dim_freqs_in=1025, sample_rate=44100, stft_n_fft=2048, stft_hop_length=441, stft_win_length=2048,
             stft_normalized=False, mask_estimator_depth=2)
REAL = {**SMALL, "dim": 384, "dim_head": 64, "heads": 8}


def small_config(depth: int = 6):
    from infinitetalk_lipsync.pipeline.separation import RoformerConfig
    return RoformerConfig(dim=16, depth=depth, heads=1, dim_head=8, ff_dim=64, mask_hidden=64)


def random_state_dict(seed: int = 0, config=None) -> dict[str, torch.Tensor]:
    """Random weights in the real key layout (our model's init; weights scaled up so the masks vary)."""
    from infinitetalk_lipsync.pipeline.separation import MelBandRoformer
    torch.manual_seed(seed)
    model = MelBandRoformer(config or small_config())
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for k, v in sd.items():
        if k.endswith("weight") and v.ndim == 2:
            sd[k] = v * 2.0
    return sd


def reference_model(sd: dict[str, torch.Tensor], depth: int = 6):
    """bs-roformer 0.3.10 (the oracle) at the SMALL sizes with ``sd`` loaded strictly."""
    from bs_roformer.mel_band_roformer import MelBandRoformer as Reference
    model = Reference(**{**SMALL, "depth": depth}).eval()
    model.load_state_dict(sd, strict=True)
    return model


def write(path: Path, sd: dict[str, torch.Tensor], dtype=torch.float16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(dtype).contiguous() for k, v in sd.items()}, str(path))
    return path
