"""The transformer block: self-attention with 3-D RoPE, I2V cross-attention, audio cross-attention, FFN."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .attention import attention
from .audio import AudioCrossAttention, reference_attention_map, speaker_positions
from .config import DiTConfig
from .layers import FeedForward, LayerNorm, RMSNorm, gated_add, modulate
from .fused import norm_rope


@dataclass
class BlockInputs:
    """What every block needs besides the hidden state (built once per forward).

    rope: fp32 [S, 1, d/2, 2] (cos, sin); context: [B, 257 + text_len, D] (image tokens first);
    audio: [B, N_t, N_a, output_dim] audio tokens per latent frame;
    speaker_masks: [3, N_h*N_w] compute-dtype token masks and lrope_rows: int64 [b], the batch
    rows with 2 speakers (L-RoPE); both None when no row has 2 speakers;
    grid: (N_t, N_h, N_w); image_tokens: CLIP tokens at the start of ``context`` (257 per image);
    backend: self-attention back-end name; cross_backend: the cross-attentions' (exact) back-end;
    audio_scale: weight of the audio cross-attention residual (1 = trained);
    shard: this rank's token slice under sequence parallelism (``pipeline.parallel.sequence.SequenceShard``;
    None in one process).
    """
    rope: torch.Tensor
    context: torch.Tensor
    audio: torch.Tensor
    speaker_masks: torch.Tensor | None
    lrope_rows: torch.Tensor | None
    grid: tuple[int, int, int]
    image_tokens: int
    backend: str
    audio_scale: float = 1.0
    cross_backend: str = "sdpa"
    shard: object = None


class SelfAttention(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.q = nn.Linear(cfg.dim, cfg.dim)
        self.k = nn.Linear(cfg.dim, cfg.dim)
        self.v = nn.Linear(cfg.dim, cfg.dim)
        self.o = nn.Linear(cfg.dim, cfg.dim)
        self.norm_q = RMSNorm(cfg.dim, cfg.eps)
        self.norm_k = RMSNorm(cfg.dim, cfg.eps)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, backend: str, shard=None):
        """x [B, S, D] -> (out [B, S, D], q, k [B, S, H, d] after RoPE, for the speaker map).

        Under sequence parallelism S is this rank's slice and ``shard`` runs the attention over all tokens."""
        q = norm_rope(self.q(x), self.norm_q, rope, self.num_heads)
        k = norm_rope(self.k(x), self.norm_k, rope, self.num_heads)
        v = self.v(x).unflatten(-1, (self.num_heads, -1))
        out = (attention(q, k, v, backend) if shard is None else shard.attention(q, k, v, backend)).flatten(-2)
        return self.o(out), q, k


class I2VCrossAttention(nn.Module):
    """Attention to the 257 CLIP tokens and the text tokens (no mask), outputs summed before ``o``."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        for name in ("q", "k", "v", "o", "k_img", "v_img"):
            setattr(self, name, nn.Linear(cfg.dim, cfg.dim))
        self.norm_q = RMSNorm(cfg.dim, cfg.eps)
        self.norm_k = RMSNorm(cfg.dim, cfg.eps)
        self.norm_k_img = RMSNorm(cfg.dim, cfg.eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor, image_tokens: int, backend: str) -> torch.Tensor:
        heads = (self.num_heads, -1)
        image, text = context[:, :image_tokens], context[:, image_tokens:]
        q = self.norm_q(self.q(x)).unflatten(-1, heads)
        out = attention(q, self.norm_k(self.k(text)).unflatten(-1, heads), self.v(text).unflatten(-1, heads),
                        backend)
        out_img = attention(q, self.norm_k_img(self.k_img(image)).unflatten(-1, heads),
                            self.v_img(image).unflatten(-1, heads), backend)
        return self.o((out + out_img).flatten(-2))


class Block(nn.Module):
    """One InfiniteTalk block. Hidden state in the compute dtype; modulation and gated adds in fp32."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm1 = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(cfg)
        self.norm3 = LayerNorm(cfg.dim, eps=cfg.eps)
        self.cross_attn = I2VCrossAttention(cfg)
        self.norm2 = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = FeedForward(cfg.dim, cfg.ffn_dim)
        self.modulation = nn.Parameter(torch.empty(1, 6, cfg.dim))
        self.audio_cross_attn = AudioCrossAttention(cfg)
        self.norm_x = LayerNorm(cfg.dim, eps=cfg.eps)
        self.class_range, self.class_interval = cfg.class_range, cfg.class_interval

    def forward(self, x: torch.Tensor, e0: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        """x [B, S, D] (compute dtype), e0 [B, 6, D] fp32 -> [B, S, D]."""
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation.float() + e0).chunk(6, dim=1)

        shard = inputs.shard
        y, q, k = self.self_attn(modulate(self.norm1(x), shift1, scale1), inputs.rope, inputs.backend, shard)
        positions = None
        rows = inputs.lrope_rows
        if rows is not None:
            if len(rows) != len(x):
                q, k = q.index_select(0, rows), k.index_select(0, rows)
            ref_tokens = inputs.grid[1] * inputs.grid[2]
            k_ref = k[:, :ref_tokens] if shard is None else shard.leading_tokens(k, ref_tokens)
            ref_map = reference_attention_map(q, k_ref, inputs.speaker_masks)
            # The official map and the position arithmetic are in the compute dtype.
            ref_map = ref_map.to(x.dtype)
            positions = speaker_positions(ref_map, self.class_range, self.class_interval,
                                          None if shard is None else shard.extrema)
        del q, k
        x = gated_add(x, y, gate1)
        del y

        x = x + self.cross_attn(self.norm3(x), inputs.context, inputs.image_tokens, inputs.cross_backend)
        audio = self.audio_cross_attn(self.norm_x(x), inputs.audio, inputs.grid[0], positions, rows,
                                      None if shard is None else shard.span)
        x = x + (audio if inputs.audio_scale == 1.0 else audio * inputs.audio_scale)

        y = self.ffn(modulate(self.norm2(x), shift2, scale2))
        return gated_add(x, y, gate2)
