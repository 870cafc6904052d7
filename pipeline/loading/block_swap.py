"""Block swap: keep N transformer blocks in (pinned) CPU memory and stream each one to the
GPU just before it runs.

The last ``n`` blocks of ``model.blocks`` are swapped. While block ``i`` computes, the next
swapped block is copied host->device on a side CUDA stream (``overlap=True``), so the
transfer hides behind compute; after a swapped block has run its GPU copies are dropped
(weights are read-only at inference, so nothing is copied back). Two swapped blocks at most
are resident at a time. On a non-CUDA device the same hooks run synchronously (a no-op
when the device is the offload device), which keeps the code path testable on CPU.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn


class BlockSwap:
    """Installed by :func:`install`; ``remove()`` restores plain blocks (all on ``device``)."""

    def __init__(self, blocks: nn.ModuleList, n: int, device, overlap: bool = True):
        self.blocks = blocks
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.overlap = overlap and self.cuda  # may be switched between forwards
        self.swapped = list(range(len(blocks) - n, len(blocks)))
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.host = {}  # block index -> [(tensor owner, kind, name, host tensor)]
        self.ready = {}  # block index -> (event or None, [device tensors])
        for i in self.swapped:
            entries = []
            for mod in blocks[i].modules():
                for kind, table in (("p", mod._parameters), ("b", mod._buffers)):
                    for name, t in table.items():
                        if t is None:
                            continue
                        host = torch.empty(t.shape, dtype=t.dtype, pin_memory=self.cuda)  # one host copy
                        host.copy_(t.data)
                        self._set(mod, kind, name, host)
                        entries.append((mod, kind, name, host))
            self.host[i] = entries
        self.handles = []
        for i, block in enumerate(blocks):
            self.handles.append(block.register_forward_pre_hook(self._make_pre(i)))
            if i in self.host:
                self.handles.append(block.register_forward_hook(self._make_post(i)))

    @staticmethod
    def _set(mod, kind, name, t):
        if kind == "p":
            mod._parameters[name].data = t
        else:
            mod._buffers[name] = t

    def _load(self, i):
        if i in self.ready:
            return
        if self.overlap:
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.stream):
                moved = [h.to(self.device, non_blocking=True) for _, _, _, h in self.host[i]]
                event = torch.cuda.Event()
                event.record(self.stream)
        else:
            moved = [h.to(self.device, non_blocking=self.cuda) for _, _, _, h in self.host[i]]
            event = None
        self.ready[i] = (event, moved)

    # The hooks live on the blocks and reach the swap through a weak reference: a strong one would make a
    # cycle (swap -> blocks -> hooks -> swap) that keeps every block's weights alive until a full gc after the
    # model is dropped. The model owns the swap (``model._block_swap``).
    def _make_pre(self, i):
        ref = weakref.ref(self)

        def hook(module, args):
            swap = ref()
            if i in swap.host:
                swap._load(i)
                event, moved = swap.ready[i]
                if event is not None:
                    current = torch.cuda.current_stream(swap.device)
                    current.wait_event(event)
                    for t in moved:
                        t.record_stream(current)  # the allocator must not reuse them before compute is done
                for (mod, kind, name, _), t in zip(swap.host[i], moved):
                    swap._set(mod, kind, name, t)
            if not swap.overlap:
                return
            later = [j for j in swap.swapped if j > i] or swap.swapped  # wrap: first swapped block of the next call
            if later[0] != i:
                swap._load(later[0])
        return hook

    def _make_post(self, i):
        ref = weakref.ref(self)

        def hook(module, args, output):
            swap = ref()
            for mod, kind, name, host in swap.host[i]:
                swap._set(mod, kind, name, host)
            swap.ready.pop(i, None)
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()
        for i, entries in self.host.items():
            for mod, kind, name, host in entries:
                self._set(mod, kind, name, host.to(self.device))
        self.host.clear()
        self.ready.clear()


def install(model: nn.Module, n: int, device, overlap: bool = True) -> BlockSwap | None:
    """Swap the last ``n`` of ``model.blocks`` (0 = none). The blocks' tensors may be anywhere;
    swapped ones end up in host memory, the caller places the rest on ``device``."""
    blocks = model.blocks
    if not 0 <= n <= len(blocks):
        raise ValueError(f"blocks_to_swap must be between 0 and {len(blocks)} (the model has {len(blocks)} blocks), got {n}")
    if n == 0:
        return None
    swap = BlockSwap(blocks, n, device, overlap)
    model._block_swap = swap
    return swap
