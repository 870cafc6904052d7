"""Mel-Band RoFormer (Wang et al. 2023), the vocal model Kijai's ComfyUI-MelBandRoFormer runs
(``MelBandRoformer_fp16.safetensors``, KimberleyJensen's weights), as inference-only PyTorch.

Module and parameter names follow the state dict of that file (``layers.{i}.{0 time|1 freq}.layers.{j}.{0 attn|1 ff}``,
``band_split.to_features.{b}``, ``mask_estimators.0.to_freqs.{b}``), so it loads strictly with no renaming.

Data path for one chunk, stereo audio [B, 2, T] at 44.1 kHz:
STFT (n_fft 2048, hop 441, Hann) -> bins of each mel band, both channels, real/imag -> per-band RMSNorm + Linear
-> [B, frames, bands, dim] -> depth x (transformer over time per band, transformer over bands per frame) ->
per-band MLP + GLU -> complex mask per (band, bin) -> masks averaged over the bands that share a bin ->
STFT x mask -> iSTFT -> vocals [B, 2, hop * (frames - 1)].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .mel_bands import band_layout


@dataclass(frozen=True)
class RoformerConfig:
    """Sizes of a Mel-Band RoFormer. Defaults: Kijai's vocal model (228 M parameters, 684 tensors)."""

    dim: int = 384
    depth: int = 6
    heads: int = 8
    dim_head: int = 64
    num_bands: int = 60
    channels: int = 2  # stereo
    time_depth: int = 1
    freq_depth: int = 1
    ff_dim: int = 1536
    mask_hidden: int = 1536
    mask_depth: int = 2
    sample_rate: int = 44100  # not stored in the file: fixed by the model's training
    n_fft: int = 2048
    hop: int = 441


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class Rotary(nn.Module):
    """Rotary position embedding over interleaved pairs of head channels; ``freqs`` [dim_head / 2] comes from
    the file (shared by all time layers, and by all frequency layers)."""

    def __init__(self, dim_head: int):
        super().__init__()
        self.freqs = nn.Parameter(1.0 / 10000 ** (torch.arange(0, dim_head, 2).float() / dim_head),
                                  requires_grad=False)

    def forward(self, x):
        """x [..., n, dim_head] -> the same, rotated by position along n."""
        positions = torch.arange(x.shape[-2], device=x.device, dtype=x.dtype).to(self.freqs.dtype)
        angles = (positions[:, None] * self.freqs).repeat_interleave(2, dim=-1)
        pairs = x.unflatten(-1, (-1, 2))
        rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
        return (x * angles.cos() + rotated * angles.sin()).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, rotary: Rotary):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.rotary_embed = rotary
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_gates = nn.Linear(dim, heads)  # a sigmoid gate per head
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim, bias=False))

    def forward(self, x):
        """x [N, n, dim] -> [N, n, dim]."""
        x = self.norm(x)
        q, k, v = self.to_qkv(x).unflatten(-1, (3, self.heads, self.dim_head)).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(self.rotary_embed(q), self.rotary_embed(k), v)
        out = out * self.to_gates(x).sigmoid().transpose(1, 2)[..., None]
        return self.to_out(out.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        # Identity where the training code had Dropout, so the parameter indices (net.1, net.4) match the file.
        self.net = nn.Sequential(RMSNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Identity(),
                                 nn.Linear(hidden, dim), nn.Identity())

    def forward(self, x):
        return self.net(x)


class Transformer(nn.Module):
    def __init__(self, cfg: RoformerConfig, depth: int, rotary: Rotary):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleList([Attention(cfg.dim, cfg.heads, cfg.dim_head, rotary),
                                                   FeedForward(cfg.dim, cfg.ff_dim)]) for _ in range(depth))
        self.norm = RMSNorm(cfg.dim)

    def forward(self, x):
        for attention, feed_forward in self.layers:
            x = attention(x) + x
            x = feed_forward(x) + x
        return self.norm(x)


class BandSplit(nn.Module):
    def __init__(self, dim: int, band_sizes: tuple[int, ...]):
        super().__init__()
        self.band_sizes = band_sizes
        self.to_features = nn.ModuleList(nn.Sequential(RMSNorm(n), nn.Linear(n, dim)) for n in band_sizes)

    def forward(self, x):
        """x [B, frames, sum(band_sizes)] -> [B, frames, bands, dim]."""
        return torch.stack([net(part) for net, part in zip(self.to_features, x.split(self.band_sizes, dim=-1))],
                           dim=-2)


def _mlp(dim_in: int, hidden: int, dim_out: int, depth: int) -> nn.Sequential:
    dims = (dim_in,) + (hidden,) * depth + (dim_out,)
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < depth:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class MaskEstimator(nn.Module):
    def __init__(self, cfg: RoformerConfig, band_sizes: tuple[int, ...]):
        super().__init__()
        self.to_freqs = nn.ModuleList(nn.Sequential(_mlp(cfg.dim, cfg.mask_hidden, 2 * n, cfg.mask_depth),
                                                    nn.GLU(dim=-1)) for n in band_sizes)

    def forward(self, x):
        """x [B, frames, bands, dim] -> [B, frames, sum(band_sizes)]."""
        return torch.cat([net(band) for net, band in zip(self.to_freqs, x.unbind(dim=-2))], dim=-1)


class MelBandRoformer(nn.Module):
    """One-stem (vocals) Mel-Band RoFormer. forward: [B, channels, T] float32 -> [B, channels, hop * (T // hop)]."""

    def __init__(self, cfg: RoformerConfig = RoformerConfig()):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        band_sizes = tuple(2 * c * int(n) for n in self.band_bins(cfg))  # (bins x channels) x (real, imag)
        self.register_buffer("freq_indices", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("bands_per_bin", torch.empty(0), persistent=False)
        time_rotary, freq_rotary = Rotary(cfg.dim_head), Rotary(cfg.dim_head)
        self.layers = nn.ModuleList(nn.ModuleList([Transformer(cfg, cfg.time_depth, time_rotary),
                                                   Transformer(cfg, cfg.freq_depth, freq_rotary)])
                                    for _ in range(cfg.depth))
        self.band_split = BandSplit(cfg.dim, band_sizes)
        self.mask_estimators = nn.ModuleList([MaskEstimator(cfg, band_sizes)])
        self.reset_buffers()

    @staticmethod
    def band_bins(cfg: RoformerConfig) -> torch.Tensor:
        """[num_bands] number of STFT bins in each band."""
        return band_layout(cfg.sample_rate, cfg.n_fft, cfg.num_bands).sum(dim=1)

    def reset_buffers(self) -> None:
        """(Re)compute the band index buffers on the model's device (after ``to_empty`` too)."""
        device = self.band_split.to_features[0][1].weight.device
        if device.type == "meta":
            return
        c = self.cfg.channels
        layout = band_layout(self.cfg.sample_rate, self.cfg.n_fft, self.cfg.num_bands)
        # Bins of every band in order, each bin once per channel; spectra are laid out as (bin, channel).
        bins = torch.arange(layout.shape[1]).expand_as(layout)[layout]
        self.freq_indices = (bins[:, None] * c + torch.arange(c)).flatten().to(device)
        self.bands_per_bin = layout.sum(dim=0).repeat_interleave(c).float().to(device)

    def _stft_args(self, device):
        cfg = self.cfg
        return dict(n_fft=cfg.n_fft, hop_length=cfg.hop, win_length=cfg.n_fft,
                    window=torch.hann_window(cfg.n_fft, device=device))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        b, c, _ = audio.shape
        stft = self._stft_args(audio.device)
        spec = torch.stft(audio.reshape(b * c, -1).float(), return_complex=True, **stft)  # [b*c, bins, frames]
        bins, frames = spec.shape[-2:]
        spec = spec.reshape(b, c, bins, frames).transpose(1, 2).reshape(b, bins * c, frames)  # (bin, channel)
        x = torch.view_as_real(spec[:, self.freq_indices])  # [b, band bins, frames, 2]
        x = self.band_split(x.permute(0, 2, 1, 3).flatten(2))  # [b, frames, bands, dim]
        bands, dim = x.shape[-2:]
        for time_transformer, freq_transformer in self.layers:
            x = x.transpose(1, 2).reshape(b * bands, frames, dim)
            x = time_transformer(x).reshape(b, bands, frames, dim).transpose(1, 2).reshape(b * frames, bands, dim)
            x = freq_transformer(x).reshape(b, frames, bands, dim)
        mask = self.mask_estimators[0](x).unflatten(-1, (-1, 2)).transpose(1, 2)  # [b, band bins, frames, 2]
        mask = torch.view_as_complex(mask.float().contiguous())
        # A bin in several bands gets the mean of their masks.
        summed = torch.zeros_like(spec).index_add_(1, self.freq_indices, mask)
        spec = spec * (summed / self.bands_per_bin.clamp(min=1e-8)[:, None])
        spec = spec.reshape(b, bins, c, frames).transpose(1, 2).reshape(b * c, bins, frames)
        return torch.istft(spec, **stft).reshape(b, c, -1)
