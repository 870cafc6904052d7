"""InfiniteTalkDiT: Wan 2.1 I2V DiT + InfiniteTalk audio cross-attention, official state-dict names.

Build on ``torch.device("meta")`` to allocate nothing, then load a state dict (``assign=True``)
or ``to_empty``. The compute dtype follows the weights (that of ``patch_embedding.weight``) and
can be overridden with ``model.compute_dtype = ...`` (e.g. for quantised Linears); time embedding,
modulation, gated residuals and head always run in fp32, as in the official model.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import check_backend, exact_backend
from .audio import AudioProjModel, group_audio_windows, token_masks
from .blocks import Block, BlockInputs
from .config import DiTConfig
from . import fused
from .embeddings import Head, MLPProj, sinusoidal_embedding
from .layers import Fp32Linear
from .rope import video_rope_table

_ROPE_CACHE_SIZE = 4


class InfiniteTalkDiT(nn.Module):
    def __init__(self, config: DiTConfig, attention: str = "sdpa"):
        super().__init__()
        cfg = self.config = config
        self.patch_embedding = nn.Conv3d(cfg.in_dim, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, cfg.dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(cfg.dim, cfg.dim))
        self.time_embedding = nn.Sequential(Fp32Linear(cfg.freq_dim, cfg.dim), nn.SiLU(),
                                            Fp32Linear(cfg.dim, cfg.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), Fp32Linear(cfg.dim, 6 * cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)
        self.img_emb = MLPProj(cfg)
        self.audio_proj = AudioProjModel(cfg)
        self._dtype_override = None
        self._rope_cache: dict = {}
        self.step_cache = None  # set by the sampler for one window (pipeline/sampler/step_cache.py)
        self.sequence_group = None  # a torch.distributed group: Ulysses sequence parallelism over its ranks
        self.attention_backend = "sdpa"
        self.set_attention_backend(attention)

    # -- configuration -------------------------------------------------------------------------
    @property
    def compute_dtype(self) -> torch.dtype:
        """The weights' dtype (follows ``.to()`` and ``load_state_dict(assign=True)``) unless set."""
        return self._dtype_override or self.patch_embedding.weight.dtype

    @compute_dtype.setter
    def compute_dtype(self, dtype: torch.dtype | None):
        self._dtype_override = dtype

    def set_attention_backend(self, backend: str, device=None) -> str:
        """Choose one of ``attention.BACKENDS`` ("auto" resolves for ``device``, default the current
        CUDA device); an unavailable one warns once and SDPA is kept. The 8-bit back-ends run the
        self-attention; the cross-attentions use their exact counterpart."""
        self.requested_attention_backend = backend
        self.attention_backend = check_backend(backend, device)
        self.cross_attention_backend = check_backend(exact_backend(self.attention_backend), device)
        return self.attention_backend

    def compile_blocks(self, device: torch.device) -> bool:
        """torch.compile every block's ``forward``, fusing the element-wise work around the GEMMs and attention.

        The module hooks stay outside the compiled code, so block swap (which swaps the weights in
        a pre-hook) works compiled too. H100, 480p, FA3: bf16 2.79 -> 2.65 s per forward, fp8 matmul with
        ``fa3_fp8`` 2.38 -> 2.16 s; the first forward at each new shape compiles (about 25 s). CUDA needs
        Triton: without it this warns and returns False, leaving the model eager.
        """
        if torch.device(device).type == "cuda":
            try:
                import triton  # noqa: F401
            except Exception as exc:
                warnings.warn(f"torch.compile needs Triton on CUDA ({type(exc).__name__}: {exc}); "
                              f"running the model uncompiled", RuntimeWarning, stacklevel=2)
                return False
        # One graph per resolution shared by all blocks (their weights are graph inputs); every
        # block is the same code, so the cache needs room for a few resolutions, not 40 blocks.
        torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
        for block in self.blocks:
            if not hasattr(block.forward, "_torchdynamo_orig_callable"):
                block.forward = torch.compile(block.forward, dynamic=False)
        return True

    def _rope(self, grid: tuple[int, int, int], device) -> torch.Tensor:
        key = (grid, str(device))
        table = self._rope_cache.get(key)
        if table is None:
            if len(self._rope_cache) >= _ROPE_CACHE_SIZE:
                self._rope_cache.pop(next(iter(self._rope_cache)))
            table = self._rope_cache[key] = video_rope_table(grid, self.config.rope_pairs, device)
        return table

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, clip_fea: torch.Tensor,
                y: torch.Tensor, audio, speaker_masks: torch.Tensor | None = None,
                audio_scale: float = 1.0) -> torch.Tensor:
        """Flow-matching velocity for a batch of conditions (CFG branches).

        x [B, 16, T, h, w] noisy latents; t [B] (or scalar) timesteps in 0..1000;
        context [B, L, text_dim] text, L <= text_len (zero-padded to text_len inside, unmasked);
        clip_fea [B, 257*k, 1280] (k images: the reference, optionally + a face close-up); y [B, 20, T, h, w] (4 mask + 16 cond-latent channels);
        audio [B, n_spk, F, 5, 12, 768] wav2vec windows, F = 4(T-1)+1, or a list of B tensors
        [n_spk_b, F, 5, 12, 768] when rows have different speaker counts (e.g. a 2-speaker cond
        row with the official single zero-speaker drop-audio row);
        speaker_masks [3, h, w] {0,1} (speaker 1, speaker 2, background), needed for 2 speakers;
        audio_scale: every block adds ``audio_scale x`` its audio cross-attention output (1 = the trained model).
        clip_fea / y / context with batch 1 are shared by all rows. Returns fp32 [B, 16, T, h, w].
        """
        cfg, dtype = self.config, self.compute_dtype
        batch, frames, height, width = self._check_latents(x, y)
        grid = (frames // cfg.patch_size[0], height // cfg.patch_size[1], width // cfg.patch_size[2])

        latents = torch.cat([x.to(dtype), y.to(dtype).expand(batch, -1, -1, -1, -1)], dim=1)
        h = self.patch_embedding(latents.to(self.patch_embedding.weight.dtype)).to(dtype)
        h = h.flatten(2).transpose(1, 2).contiguous()  # [B, S, D], tokens in (t, h, w) order
        rope, shard = self._rope(grid, x.device), None
        if self.sequence_group is not None:
            from ..parallel.sequence import SequenceShard  # torch.distributed only where it is used
            shard = SequenceShard(self.sequence_group, h.shape[1])
            h, rope = shard.local(h, 1), shard.local(rope, 0)
        if h.is_cuda:  # once per process: compiled blocks use the fused kernel only after this check
            fused.verify(cfg.dim, cfg.eps, rope, cfg.num_heads, dtype)

        e = self.time_embedding(sinusoidal_embedding(self._timesteps(t, batch, x.device), cfg.freq_dim))
        e0 = self.time_projection(e).unflatten(1, (6, cfg.dim))

        text = self.text_embedding(self._padded_text(context, batch).to(dtype))
        image = self.img_emb(self._clip_features(clip_fea, batch).to(dtype))
        audio_tokens, speakers = self._audio_tokens(audio, batch, frames, dtype, x.device)
        masks = rows = None
        if max(speakers) == 2:  # the reference attention map is only ever computed for 2 speakers
            masks = self._token_masks(speaker_masks, (height, width), grid, dtype, x.device)
            rows = torch.tensor([i for i, n in enumerate(speakers) if n == 2], device=x.device)
        inputs = BlockInputs(rope=rope, context=torch.cat([image, text], dim=1),
                             audio=audio_tokens, speaker_masks=masks, lrope_rows=rows, grid=grid,
                             image_tokens=image.shape[1], backend=self.attention_backend,
                             audio_scale=float(audio_scale),
                             cross_backend=self.cross_attention_backend, shard=shard)

        if self.step_cache is None:
            h = self._blocks(h, e0, inputs)
        else:  # a skipped step reuses the blocks' residual of the last computed one (step_cache.py)
            h = self.step_cache.run_blocks(h, e, e0, lambda hidden: self._blocks(hidden, e0, inputs))
        out = self.head(h, e)
        return self._unpatchify(out if shard is None else shard.gather(out), grid)

    def _blocks(self, h: torch.Tensor, e0: torch.Tensor, inputs: BlockInputs) -> torch.Tensor:
        for block in self.blocks:
            h = block(h, e0, inputs)
        return h

    def _unpatchify(self, out: torch.Tensor, grid) -> torch.Tensor:
        """[B, S, pt*ph*pw*C] (channel fastest) -> [B, C, T, h, w] fp32."""
        pt, ph, pw = self.config.patch_size
        n_t, n_h, n_w = grid
        out = out.view(out.shape[0], n_t, n_h, n_w, pt, ph, pw, self.config.out_dim)
        return out.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(out.shape[0], -1, n_t * pt, n_h * ph, n_w * pw).float()

    # -- inputs --------------------------------------------------------------------------------
    def _check_latents(self, x: torch.Tensor, y: torch.Tensor):
        cfg = self.config
        if x.dim() != 5 or x.shape[1] != cfg.out_dim:
            raise ValueError(f"x must be [B, {cfg.out_dim}, T, h, w] latents, got {tuple(x.shape)}")
        batch, channels, frames, height, width = x.shape
        if y.dim() != 5 or y.shape[0] not in (1, batch) or y.shape[2:] != x.shape[2:] \
                or channels + y.shape[1] != cfg.in_dim:
            raise ValueError(f"y must be [B or 1, {cfg.in_dim - channels}, {frames}, {height}, {width}] "
                             f"(mask + cond latent), got {tuple(y.shape)}")
        if height % cfg.patch_size[1] or width % cfg.patch_size[2]:
            raise ValueError(f"latent size {height}x{width} must be divisible by the patch {cfg.patch_size[1:]}")
        return batch, frames, height, width

    @staticmethod
    def _timesteps(t, batch: int, device) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1)
        if t.numel() not in (1, batch):
            raise ValueError(f"t must have 1 or {batch} timesteps, got {t.numel()}")
        return t.expand(batch)

    def _clip_features(self, clip_fea: torch.Tensor, batch: int) -> torch.Tensor:
        """[B or 1, 257*k, 1280]: one image's CLIP tokens, or k images' concatenated (e.g. + a face close-up)."""
        cfg = self.config
        if clip_fea.dim() != 3 or clip_fea.shape[0] not in (1, batch) or clip_fea.shape[2] != cfg.clip_dim \
                or clip_fea.shape[1] == 0 or clip_fea.shape[1] % cfg.clip_tokens:
            raise ValueError(f"clip_fea must be [B or 1, {cfg.clip_tokens}*k, {cfg.clip_dim}] (CLIP tokens of k images), "
                             f"got {tuple(clip_fea.shape)}")
        return clip_fea.expand(batch, -1, -1)

    def _padded_text(self, context: torch.Tensor, batch: int) -> torch.Tensor:
        cfg = self.config
        if context.dim() != 3 or context.shape[0] not in (1, batch) or context.shape[2] != cfg.text_dim \
                or context.shape[1] > cfg.text_len:
            raise ValueError(f"context must be [B or 1, L <= {cfg.text_len}, {cfg.text_dim}] text embeddings, "
                             f"got {tuple(context.shape)}")
        # Zero rows are attended to, as in the official model (context_lens=None).
        return F.pad(context, (0, 0, 0, cfg.text_len - context.shape[1])).expand(batch, -1, -1)

    def _audio_tokens(self, audio, batch: int, frames: int, dtype, device):
        """-> (tokens [B, N_t, N_a, output_dim], speakers per row). Rows with fewer speakers than
        others repeat their tokens: attention to duplicated (key, value) pairs is unchanged."""
        cfg = self.config
        if isinstance(audio, (list, tuple)):
            rows = list(audio)
        elif torch.is_tensor(audio) and audio.dim() == 6:
            rows = list(audio.unbind(0))
        else:
            rows = None
        n_frames = cfg.vae_scale * (frames - 1) + 1
        tail = (n_frames, cfg.audio_window, cfg.audio_layers, cfg.audio_channels)
        if rows is None or len(rows) != batch or any(r.dim() != 5 or tuple(r.shape[1:]) != tail
                                                     or r.shape[0] not in (1, 2) for r in rows):
            raise ValueError(f"audio must be [B={batch}, 1 or 2 speakers, {', '.join(map(str, tail))}] wav2vec "
                             f"windows (F = {cfg.vae_scale}(T-1)+1 for T={frames} latent frames), or a list of "
                             f"B tensors [speakers, ...]")
        speakers = [r.shape[0] for r in rows]
        first, later = group_audio_windows(torch.cat(rows).to(device=device, dtype=dtype), cfg.audio_window,
                                           cfg.vae_scale)
        tokens = self.audio_proj(first, later).to(dtype).split(speakers)  # [n, N_t, ctx, C] per row
        most = max(speakers)
        tokens = [torch.cat([tok] * (most // len(tok)), dim=0) for tok in tokens]
        return torch.stack([tok.transpose(0, 1).flatten(1, 2) for tok in tokens]), speakers

    @staticmethod
    def _token_masks(masks, latent_hw, grid, dtype, device) -> torch.Tensor:
        if masks is None or masks.dim() != 3 or masks.shape[0] != 3 or tuple(masks.shape[1:]) != latent_hw:
            got = None if masks is None else tuple(masks.shape)
            raise ValueError(f"speaker_masks must be [3, {latent_hw[0]}, {latent_hw[1]}] (speaker 1, speaker 2, "
                             f"background at latent resolution) for 2 speakers, got {got}")
        tokens = token_masks(masks.to(device), grid[1:], dtype)
        empty = [name for name, row in zip(("speaker 1", "speaker 2", "background"), tokens) if not row.any()]
        if empty:
            raise ValueError(f"speaker_masks: {', '.join(empty)} mask is empty at the {grid[1]}x{grid[2]} token "
                             f"grid; draw each region at least 2x2 latent pixels")
        return tokens


def count_parameters(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
