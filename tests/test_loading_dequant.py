"""Our torch GGUF kernels vs the gguf package's numpy dequantisation: bit-identical float32."""
import numpy as np
import pytest
import torch

import gguf
from infinitetalk_lipsync.pipeline.loading import dequant
from loading_files import random_blocks

T = gguf.GGMLQuantizationType
ALL = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.astype(np.float32).view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("name", ALL)
def test_random_blocks_bit_exact(name):
    qtype = getattr(T, name)
    raw = random_blocks(np.random.default_rng(sum(map(ord, name))), qtype, rows=16, blocks_per_row=3)
    ref = gguf.quants.dequantize(raw, qtype)
    got = dequant.dequantize(torch.from_numpy(raw), int(qtype), ref.shape).numpy()
    assert _bits_equal(got, ref), f"{name}: max diff {np.abs(got - ref).max()}"


@pytest.mark.parametrize("name", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "BF16", "F16"])
def test_gguf_quantised_tensors_bit_exact(name):
    """Blocks produced by gguf's own quantiser (realistic scales), plus the float storage types."""
    qtype = getattr(T, name)
    x = np.random.default_rng(1).normal(0, 0.02, (8, 256)).astype(np.float32)
    raw = gguf.quants.quantize(x, qtype)
    ref = gguf.quants.dequantize(raw, qtype)
    got = dequant.dequantize(torch.from_numpy(np.ascontiguousarray(raw).view(np.uint8)), int(qtype), ref.shape).numpy()
    assert _bits_equal(got, ref)


def test_output_dtype_and_sizes():
    raw = random_blocks(np.random.default_rng(0), T.Q8_0, rows=2, blocks_per_row=2)
    out = dequant.dequantize(torch.from_numpy(raw), dequant.Q8_0, (2, 64), torch.bfloat16)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 64)
    assert dequant.packed_nbytes(dequant.Q4_K, (5120, 13824)) == 5120 * 13824 // 256 * 144
    for qtype, (name, block, size) in dequant.TYPES.items():
        assert gguf.GGML_QUANT_SIZES[getattr(T, name)] == (block, size)


def test_unsupported_type_is_named():
    with pytest.raises(NotImplementedError, match="IQ2_XXS|type 16"):
        dequant.dequantize(torch.zeros(66, dtype=torch.uint8), int(T.IQ2_XXS), (256,))
