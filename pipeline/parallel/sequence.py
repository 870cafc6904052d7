"""Ulysses sequence parallelism: each rank of a group holds a contiguous slice of the tokens.

Everything per token (projections, norms, RoPE, FFN, cross-attention, head) runs on the local
slice. Self-attention needs every token: an all-to-all turns [B, S_r, H, d] (my tokens, all heads)
into [B, S, H/W, d] (all tokens, my heads), attention runs on that, and the inverse all-to-all
returns [B, S_r, H, d]. Slices may differ in length by one token (any S), so no padding token ever
enters an attention. The outputs equal one process's up to the attention kernel's summation order.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from ..dit.attention import attention


def slice_sizes(total: int, world: int) -> list[int]:
    """Tokens per rank: contiguous, the first ``total % world`` ranks one more."""
    base, extra = divmod(total, world)
    return [base + (r < extra) for r in range(world)]


class SequenceShard:
    """This rank's tokens ``[start, stop)`` of ``total`` under the process group ``group``."""

    def __init__(self, group, total: int):
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.total = total
        self.sizes = slice_sizes(total, self.world)
        self.start = sum(self.sizes[:self.rank])
        self.stop = self.start + self.sizes[self.rank]

    @property
    def span(self) -> tuple[int, int]:
        """(first token, all tokens), what the per-frame audio attention needs to find its frames."""
        return self.start, self.total

    def local(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        return tensor.narrow(dim, self.start, self.stop - self.start)

    # -- self-attention -------------------------------------------------------------------------
    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str) -> torch.Tensor:
        """q, k, v [B, S_r, H, d] (H divisible by the world size) -> [B, S_r, H, d]."""
        heads = q.shape[2]
        if heads % self.world:
            raise ValueError(f"sequence parallelism over {self.world} ranks needs heads divisible by it, got {heads}")
        q, k, v = self._to_heads(torch.stack([q, k, v]))
        return self._to_tokens(attention(q, k, v, backend))

    def _to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[P, B, S_r, H, d] -> [P, B, S, H/W, d]: send head chunk j of my tokens to rank j."""
        p, b, s_r, h, d = x.shape
        send = x.unflatten(3, (self.world, h // self.world)).permute(3, 2, 0, 1, 4, 5).contiguous()
        recv = send.new_empty((self.total, p, b, h // self.world, d))
        dist.all_to_all_single(recv, send.flatten(0, 1), output_split_sizes=self.sizes,
                               input_split_sizes=[s_r] * self.world, group=self.group)
        return recv.permute(1, 2, 0, 3, 4)

    def _to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S, H/W, d] -> [B, S_r, H, d]: send rank j's tokens back, gather every rank's heads."""
        b, _, h_w, d = x.shape
        s_r = self.stop - self.start
        recv = x.new_empty((self.world * s_r, b, h_w, d))
        dist.all_to_all_single(recv, x.transpose(0, 1).contiguous(), output_split_sizes=[s_r] * self.world,
                               input_split_sizes=self.sizes, group=self.group)
        return recv.view(self.world, s_r, b, h_w, d).permute(2, 1, 0, 3, 4).flatten(2, 3)

    # -- the two-speaker reference map ----------------------------------------------------------
    def leading_tokens(self, x: torch.Tensor, count: int) -> torch.Tensor:
        """The first ``count`` tokens of the whole sequence [B, count, ...] from every rank's slice.

        Each position is filled by exactly one rank and summed with zeros, so the result is exact."""
        out = x.new_zeros((x.shape[0], count, *x.shape[2:]))
        lo, hi = self.start, min(self.stop, count)
        if hi > lo:
            out[:, lo:hi] = x[:, :hi - lo]
        dist.all_reduce(out, group=self.group)
        return out

    def extrema(self, low: torch.Tensor, high: torch.Tensor):
        """Per-slice min/max -> the min/max over all tokens."""
        low, high = low.clone(), high.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN, group=self.group)
        dist.all_reduce(high, op=dist.ReduceOp.MAX, group=self.group)
        return low, high

    # -- output ---------------------------------------------------------------------------------
    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S_r, C] from every rank -> [B, S, C] on every rank."""
        longest = max(self.sizes)
        padded = x.new_zeros((x.shape[0], longest, *x.shape[2:]))
        padded[:, :x.shape[1]] = x
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([part[:, :n] for part, n in zip(parts, self.sizes)], dim=1)
