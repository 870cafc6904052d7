"""The InfiniteTalk audio path: wav2vec windows -> audio tokens -> per-frame audio cross-attention.

Two speakers use L-RoPE: each visual token gets a fractional 1-D position from the
reference attention map (which speaker region of latent frame 0 it attends to), speaker 1's
audio tokens sit at position 2 and speaker 2's at 22, so queries attend to "their" speaker.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import sdpa
from .config import DiTConfig
from .layers import Fp32LayerNorm
from .rope import apply_rope, lrope_table


def group_audio_windows(audio: torch.Tensor, window: int, vae_scale: int):
    """Regroup per-video-frame windows into per-latent-frame windows (official rule).

    audio [N, F, window, L, C] with F = vae_scale*(T-1)+1 -> (first [N, 1, window, L, C],
    later [N, T-1, window+vae_scale-1, L, C]). Latent frame k>0 sees window[:mid+1] of its
    first video frame, the centre of the middle ones and window[mid:] of its last one.
    """
    mid = window // 2
    later = audio[:, 1:].unflatten(1, (-1, vae_scale))  # [N, T-1, vae_scale, window, L, C]
    later = torch.cat([later[:, :, 0, :mid + 1], later[:, :, 1:-1, mid], later[:, :, -1, mid:]], dim=2)
    return audio[:, :1], later


class AudioProjModel(nn.Module):
    """wav2vec windows -> ``context_tokens`` tokens of ``output_dim`` per latent frame."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        per_frame = cfg.audio_layers * cfg.audio_channels
        self.context_tokens, self.output_dim = cfg.context_tokens, cfg.output_dim
        self.proj1 = nn.Linear(cfg.audio_window * per_frame, cfg.intermediate_dim)
        self.proj1_vf = nn.Linear(cfg.audio_window_vf * per_frame, cfg.intermediate_dim)
        self.proj2 = nn.Linear(cfg.intermediate_dim, cfg.intermediate_dim)
        self.proj3 = nn.Linear(cfg.intermediate_dim, cfg.context_tokens * cfg.output_dim)
        self.norm = Fp32LayerNorm(cfg.output_dim)  # eps 1e-5 (nn.LayerNorm default), fp32 as official

    def forward(self, first: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        """first [N, 1, w, L, C], later [N, T-1, w', L, C] -> [N, T, context_tokens, output_dim]."""
        h = torch.cat([torch.relu(self.proj1(first.flatten(2))), torch.relu(self.proj1_vf(later.flatten(2)))],
                      dim=1)
        tokens = self.proj3(torch.relu(self.proj2(h)))
        return self.norm(tokens.unflatten(-1, (self.context_tokens, self.output_dim)))


def token_masks(masks: torch.Tensor, grid_hw: tuple[int, int], dtype) -> torch.Tensor:
    """Latent-resolution masks [3, h, w] -> {0,1} token masks [3, N_h*N_w] (nearest resize, > 0)."""
    resized = F.interpolate(masks[None].float(), size=grid_hw, mode="nearest")[0]
    return (resized > 0).flatten(1).to(dtype)


def reference_attention_map(q: torch.Tensor, k_ref: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-class mean attention of every visual token to the reference frame's regions.

    q [b, S, H, d] and k_ref [b, R, H, d] (RoPE'd self-attention q/k, R = tokens of latent
    frame 0), masks [3, R] -> [b, 3, S] fp32:
    ``mean_h sum_j softmax_j(q_h k_h / sqrt d)[i, j] * M_c[j] / sum_j M_c[j]``.
    Computed as one attention whose values are the masks (no [S, R] matrix is stored).
    """
    b, r, heads, d = k_ref.shape
    values = torch.zeros(r, d, dtype=q.dtype, device=q.device)
    values[:, :masks.shape[0]] = masks.T
    values = values[None, :, None].expand(b, r, heads, d).contiguous()
    hits = sdpa(q, k_ref, values)[..., :masks.shape[0]].float().mean(dim=2)  # [b, S, 3]
    return (hits / masks.float().sum(dim=1)).transpose(1, 2)


def speaker_positions(ref_map: torch.Tensor, class_range: int, class_interval: int, extrema=None) -> torch.Tensor:
    """L-RoPE query positions [b, S] from the reference map [b, 3, S] (arithmetic in its dtype).

    Speaker 1 tokens get 0..interval, speaker 2 tokens range-interval..range (min-max scaled over
    all tokens), background tokens range/2; the class is the argmax over the 3 maps.
    ``extrema(low, high)`` -> the min/max over all tokens when ``ref_map`` holds a slice of them
    (sequence parallelism).
    """
    low, high = ref_map.amin(dim=2, keepdim=True), ref_map.amax(dim=2, keepdim=True)
    if extrema is not None:
        low, high = extrema(low, high)
    unit = (ref_map[:, :2] - low[:, :2]) / (high[:, :2] - low[:, :2] + 1e-8)
    # Python-number offsets: a torch.tensor literal would be a synchronising host->device copy per block.
    speaker1 = unit[:, :1] * class_interval
    speaker2 = unit[:, 1:] * class_interval + (class_range - class_interval)
    background = torch.full_like(ref_map[:, :1], class_range // 2)
    choices = torch.cat([speaker1, speaker2, background], dim=1)
    return choices.gather(1, ref_map.argmax(dim=1, keepdim=True)).squeeze(1)


class AudioCrossAttention(nn.Module):
    """Visual tokens of latent frame f attend to the audio tokens of frame f only (no q/k norm)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.key_positions = ((0 + cfg.class_interval) / 2,
                              (2 * cfg.class_range - cfg.class_interval) / 2)  # (2, 22)
        self.q_linear = nn.Linear(cfg.dim, cfg.dim)
        self.kv_linear = nn.Linear(cfg.output_dim, 2 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor, audio: torch.Tensor, frames: int, positions: torch.Tensor | None,
                lrope_rows: torch.Tensor | None, span: tuple[int, int] | None = None) -> torch.Tensor:
        """x [B, S, D], audio tokens [B, N_t, N_a, C] -> [B, S, D].

        positions: L-RoPE query positions [b, S] for the batch rows ``lrope_rows`` (2 speakers,
        N_a = 2 x context_tokens, speaker 1 first), None when no row uses L-RoPE.
        span: (first token, all tokens) when x holds a slice of the sequence (sequence parallelism):
        the slice is padded to whole latent frames, which attend to their frame's audio as usual.
        """
        batch, seq, dim = x.shape
        q = self.q_linear(x).unflatten(-1, (self.num_heads, self.head_dim))  # [B, S, H, d]
        kv = self.kv_linear(audio).unflatten(-1, (2, self.num_heads, self.head_dim))  # [B, N_t, N_a, 2, H, d]
        k, v = kv[..., 0, :, :], kv[..., 1, :, :]
        if positions is not None:
            q_pos = positions.new_zeros(batch, seq).index_copy(0, lrope_rows, positions)
            q = apply_rope(q, lrope_table(q_pos, self.head_dim)[:, :, None])
            n_a = audio.shape[2]
            k_pos = q_pos.new_zeros(batch, n_a)
            k_pos[lrope_rows, :n_a // 2] = self.key_positions[0]
            k_pos[lrope_rows, n_a // 2:] = self.key_positions[1]
            k = apply_rope(k, lrope_table(k_pos, self.head_dim)[:, None, :, None])
        lead = 0
        if span is not None:
            frame_tokens = span[1] // frames
            first, last = span[0] // frame_tokens, -(-(span[0] + seq) // frame_tokens)
            lead = span[0] - first * frame_tokens
            q = F.pad(q, (0, 0, 0, 0, lead, (last - first) * frame_tokens - seq - lead))
            k, v, frames = k[:, first:last], v[:, first:last], last - first
        q = q.reshape(batch * frames, q.shape[1] // frames, self.num_heads, self.head_dim)
        # Always SDPA: N_a = 32/64 keys cost ~0.3 ms per block, and the official code keeps this
        # attention exact (xformers) even when it switches the others to SageAttention.
        out = sdpa(q, k.flatten(0, 1), v.flatten(0, 1)).reshape(batch, -1, dim)
        return self.proj(out[:, lead:lead + seq])
