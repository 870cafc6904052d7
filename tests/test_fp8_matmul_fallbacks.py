"""fp8 matmul (``quant_linear.scaled_mm``): bias in the GEMM epilogue and unpadded rows where the build
takes them, else learnt once from the first failure (rows padded to 16, bias added after)."""
import pytest
import torch

from infinitetalk_lipsync.pipeline.loading import quant_linear


def _fake_scaled_mm(no_bias: bool, rows_multiple_of_16: bool, calls: list):
    def scaled_mm(a, b, scale_a, scale_b, bias=None, out_dtype=None):
        calls.append((a.shape[0], bias is not None))
        if no_bias and bias is not None:
            raise RuntimeError("Bias is not supported with row-wise scaling")
        if rows_multiple_of_16 and a.shape[0] % 16:
            raise RuntimeError("mat1 dims must be multiples of 16")
        out = (a.float() * scale_a) @ (b.float() * scale_b)
        return (out if bias is None else out + bias.float()).to(out_dtype)
    return scaled_mm


@pytest.mark.parametrize("no_bias,pad", [(False, False), (True, False), (False, True), (True, True)])
def test_scaled_mm_learns_what_the_build_needs_and_gives_the_same_result(monkeypatch, no_bias, pad):
    calls = []
    monkeypatch.setattr(torch, "_scaled_mm", _fake_scaled_mm(no_bias, pad, calls), raising=False)
    monkeypatch.setattr(quant_linear, "_MM", {"pad_rows": False, "bias": True})
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 32, generator=gen)
    w = (torch.randn(24, 32, generator=gen) * 0.1).to(torch.float8_e4m3fn)
    bias = torch.randn(24, generator=gen)
    xq, sx = quant_linear._quantize_fp8(x, rowwise=True)
    sw = torch.ones(1, 24)
    ref = (xq.float() * sx) @ w.float().t() + bias
    for _ in range(2):  # the second call goes straight to the learnt form
        out = quant_linear.scaled_mm(xq, w.t(), sx, sw, bias, torch.float32)
        torch.testing.assert_close(out, ref)
        assert out.shape == (40, 24)
    assert quant_linear._MM == {"pad_rows": pad, "bias": not no_bias}
    last = calls[-1]
    assert last == ((48 if pad else 40), not no_bias)
