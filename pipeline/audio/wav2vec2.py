"""A compact wav2vec2 encoder (the "base" layout of chinese-wav2vec2-base), without transformers.

Parameter names equal Hugging Face ``Wav2Vec2Model``'s, so checkpoints load by name (see
``wav2vec2_loading``). The InfiniteTalk forward differs from the stock one in one place: the CNN
features are linearly resampled to one step per video frame *before* the projection and the
transformer (``forward(input_values, seq_len)``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Wav2Vec2Config:
    """The hyper-parameters we use, named as in Hugging Face ``config.json``."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    conv_dim: tuple = (512,) * 7
    conv_kernel: tuple = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    do_stable_layer_norm: bool = False
    hidden_act: str = "gelu"
    feat_extract_activation: str = "gelu"

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "Wav2Vec2Config":
        """Build from a config.json dict (unknown keys ignored); rejects layouts this module lacks."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        config = cls(**kwargs)
        config.check(source)
        return config

    @classmethod
    def from_json(cls, path: str) -> "Wav2Vec2Config":
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle), source=path)

    def check(self, source: str) -> None:
        problems = []
        if self.feat_extract_norm != "group":
            problems.append(f"feat_extract_norm={self.feat_extract_norm!r} (only 'group' is supported)")
        if self.do_stable_layer_norm:
            problems.append("do_stable_layer_norm=true (the 'large' layout; only the post-norm 'base' layout is supported)")
        for key in ("hidden_act", "feat_extract_activation"):
            if getattr(self, key) != "gelu":
                problems.append(f"{key}={getattr(self, key)!r} (only 'gelu' is supported)")
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride):
            problems.append("conv_dim, conv_kernel and conv_stride differ in length")
        if self.hidden_size % self.num_attention_heads:
            problems.append(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}")
        if problems:
            raise ValueError(f"{source}: unsupported wav2vec2 configuration: " + "; ".join(problems)
                             + ". Use a wav2vec2-base checkpoint such as TencentGameMate/chinese-wav2vec2-base.")


class _ConvLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, group_norm: bool):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias)
        # "group" feature norm: one GroupNorm with a group per channel, on the first layer only.
        self.layer_norm = nn.GroupNorm(c_out, c_out, affine=True) if group_norm else None


class FeatureExtractor(nn.Module):
    """The CNN: waveform [B, N] -> features [B, C, T] at sample_rate / prod(strides) (50 Hz).

    Memory stays bounded for any length: the first layer's per-channel GroupNorm statistics are
    gathered over the whole clip in a first pass (float64 sums), then output steps are produced
    ``chunk_steps`` at a time from the input samples they see (outputs equal the one-shot CNN up
    to float rounding; the one-shot first layer alone would need ~0.4 GB per minute of audio).
    """

    chunk_steps = 1024

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        dims = (1,) + tuple(config.conv_dim)
        self.conv_layers = nn.ModuleList(
            _ConvLayer(dims[i], dims[i + 1], k, s, config.conv_bias, group_norm=(i == 0))
            for i, (k, s) in enumerate(zip(config.conv_kernel, config.conv_stride)))
        self.receptive_field, self.stride = 1, 1
        for k, s in zip(config.conv_kernel, config.conv_stride):
            self.receptive_field += (k - 1) * self.stride
            self.stride *= s

    def num_steps(self, num_samples: int) -> int:
        return max(0, (num_samples - self.receptive_field) // self.stride + 1)

    def _first_layer_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and 1/std of the first conv's output over the whole clip: [B, C, 1] each."""
        first = self.conv_layers[0].conv
        k, s = first.kernel_size[0], first.stride[0]
        steps = (x.shape[-1] - k) // s + 1
        chunk = self.chunk_steps * self.stride // s
        total = torch.zeros(x.shape[0], first.out_channels, 1, dtype=torch.float64, device=x.device)
        squares = torch.zeros_like(total)
        for a in range(0, steps, chunk):
            b = min(steps, a + chunk)
            y = first(x[:, :, a * s:(b - 1) * s + k]).double()
            total += y.sum(-1, keepdim=True)
            squares += y.square().sum(-1, keepdim=True)
        mean = total / steps
        var = (squares / steps - mean.square()).clamp_min(0)
        return mean, (var + self.conv_layers[0].layer_norm.eps).rsqrt()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, None]
        steps = self.num_steps(x.shape[-1])
        mean, inv_std = self._first_layer_stats(x)
        norm = self.conv_layers[0].layer_norm
        scale = (inv_std * norm.weight.double()[:, None])
        shift = (norm.bias.double()[:, None] - mean * scale).to(x.dtype)
        scale = scale.to(x.dtype)
        outputs = []
        for a in range(0, steps, self.chunk_steps):
            b = min(steps, a + self.chunk_steps)
            y = self.conv_layers[0].conv(x[:, :, a * self.stride:(b - 1) * self.stride + self.receptive_field])
            y = F.gelu(torch.addcmul(shift, y, scale))
            for layer in self.conv_layers[1:]:
                y = F.gelu(layer.conv(y))
            outputs.append(y)
        return torch.cat(outputs, dim=-1)


class FeatureProjection(nn.Module):
    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.conv_dim[-1], eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.conv_dim[-1], config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.layer_norm(x))


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d whose weight is ``weight_g * weight_v / ||weight_v||`` (norm over dims 0, 1),
    i.e. torch weight_norm with dim=2 as in wav2vec2's positional convolution."""

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.groups = groups
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.weight_v
        weight = v * (self.weight_g / v.norm(dim=(0, 1), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class PositionalConvEmbedding(nn.Module):
    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.conv = WeightNormConv1d(config.hidden_size, config.num_conv_pos_embeddings,
                                     config.num_conv_pos_embedding_groups)
        self.trim = 1 if config.num_conv_pos_embeddings % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, H] -> [B, L, H]."""
        y = self.conv(x.transpose(1, 2))
        if self.trim:  # even kernel with padding k//2 yields one extra step
            y = y[:, :, :-self.trim]
        return F.gelu(y).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        h = config.hidden_size
        self.heads = config.num_attention_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(h, h) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        q, k, v = (p(x).view(b, n, self.heads, h // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h))


class FeedForward(nn.Module):
    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(F.gelu(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    """Post-norm transformer layer (wav2vec2-base)."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.attention = Attention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(x + self.attention(x))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.pos_conv_embed = PositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, H] -> every layer's output stacked, [B, L, num_layers, H]."""
        x = self.layer_norm(x + self.pos_conv_embed(x))
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return torch.stack(outputs, dim=2)


class Wav2Vec2Encoder(nn.Module):
    """wav2vec2-base with the InfiniteTalk forward.

    ``normalize_input``: whether callers should apply per-utterance zero-mean/unit-variance
    normalisation first (``do_normalize`` of preprocessor_config.json); the module only records it.
    """

    def __init__(self, config: Wav2Vec2Config, normalize_input: bool = False):
        super().__init__()
        self.config = config
        self.normalize_input = normalize_input
        self.feature_extractor = FeatureExtractor(config)
        self.feature_projection = FeatureProjection(config)
        self.encoder = Encoder(config)

    @property
    def receptive_field(self) -> int:
        """Samples needed for one CNN output step (400 for base)."""
        return self.feature_extractor.receptive_field

    def conv_features(self, input_values: torch.Tensor) -> torch.Tensor:
        """input_values [B, N] -> CNN features [B, T50, C]."""
        return self.feature_extractor(input_values).transpose(1, 2)

    @staticmethod
    def resample_steps(features: torch.Tensor, seq_len: int) -> torch.Tensor:
        """Linear interpolation in time with align_corners=True: [B, T, C] -> [B, seq_len, C]."""
        return F.interpolate(features.transpose(1, 2), size=seq_len, mode="linear",
                             align_corners=True).transpose(1, 2)

    def encode_steps(self, features: torch.Tensor) -> torch.Tensor:
        """CNN features [B, L, C] -> all layer outputs [B, L, num_layers, H]."""
        return self.encoder(self.feature_projection(features))

    def forward(self, input_values: torch.Tensor, seq_len: int) -> torch.Tensor:
        """input_values [B, N] (16 kHz, already normalised if ``normalize_input``) ->
        [B, seq_len, num_layers, H]."""
        return self.encode_steps(self.resample_steps(self.conv_features(input_values), seq_len))
