"""Block swap: same outputs as no swap; swapped blocks rest on the offload device between uses.
(CPU path here; the CUDA side-stream path is exercised by bench/loading.py.)"""
import numpy as np
import pytest
import torch
from torch import nn

import gguf
from infinitetalk_lipsync.pipeline.loading import block_swap
from infinitetalk_lipsync.pipeline.loading.quant_linear import GGUFLinear
from loading_files import random_blocks


class Block(nn.Module):
    def __init__(self, i):
        super().__init__()
        g = torch.Generator().manual_seed(i)
        self.lin = nn.Linear(32, 32)
        self.lin.weight.data = torch.randn(32, 32, generator=g) * 0.1
        raw = random_blocks(np.random.default_rng(i), gguf.GGMLQuantizationType.Q8_0, 32, 1)
        self.q = GGUFLinear(torch.from_numpy(raw), int(gguf.GGMLQuantizationType.Q8_0), (32, 32), torch.zeros(32),
                            torch.float32)
        self.modulation = nn.Parameter(torch.randn(1, 32, generator=g))
        self.register_buffer("gain", torch.full((32,), 1.0 + i))

    def forward(self, x):
        return torch.tanh(self.q(self.lin(x) * self.gain + self.modulation))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(Block(i) for i in range(4))

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


@pytest.mark.parametrize("n", [1, 2, 4])
def test_same_output_and_blocks_rest_offloaded(n):
    model = Model().requires_grad_(False)
    x = torch.randn(3, 32)
    ref = model(x)
    swap = block_swap.install(model, n, "cpu")
    assert swap.swapped == list(range(4 - n, 4))
    for _ in range(2):  # second call uses the wrap-around prefetch state
        assert torch.equal(model(x), ref)
        assert not swap.ready
    for mod, kind, name, host in swap.host[3]:  # between calls the block points at its host copies
        current = mod._parameters[name] if kind == "p" else mod._buffers[name]
        assert current.data_ptr() == host.data_ptr()
    swap.remove()
    assert torch.equal(model(x), ref)


def test_zero_is_none_and_range_checked():
    model = Model()
    assert block_swap.install(model, 0, "cpu") is None
    with pytest.raises(ValueError, match="between 0 and 4"):
        block_swap.install(model, 5, "cpu")
