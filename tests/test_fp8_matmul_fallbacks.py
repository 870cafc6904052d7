"""fp8 matmul (``quant_linear.scaled_mm``): fast accumulation, bias in the GEMM epilogue and unpadded rows where
the build takes them, else learnt once from the first failure (bias added after, rows padded to 16, exact
accumulation, in that order of giving up)."""
import pytest
import torch

from infinitetalk_lipsync.pipeline.loading import quant_linear


def _fake_scaled_mm(no_bias: bool, rows_multiple_of_16: bool, no_fast: bool, calls: list):
    def scaled_mm(a, b, scale_a, scale_b, bias=None, out_dtype=None, use_fast_accum=False):
        calls.append((a.shape[0], bias is not None, use_fast_accum))
        if no_fast and use_fast_accum:
            raise RuntimeError("use_fast_accum is not supported here")
        if no_bias and bias is not None:
            raise RuntimeError("Bias is not supported with row-wise scaling")
        if rows_multiple_of_16 and a.shape[0] % 16:
            raise RuntimeError("mat1 dims must be multiples of 16")
        out = (a.float() * scale_a) @ (b.float() * scale_b)
        return (out if bias is None else out + bias.float()).to(out_dtype)
    return scaled_mm


@pytest.mark.parametrize("no_fast", [False, True])
@pytest.mark.parametrize("no_bias,pad", [(False, False), (True, False), (False, True), (True, True)])
def test_scaled_mm_learns_what_the_build_needs_and_gives_the_same_result(monkeypatch, no_bias, pad, no_fast):
    calls = []
    monkeypatch.setattr(torch, "_scaled_mm", _fake_scaled_mm(no_bias, pad, no_fast, calls), raising=False)
    monkeypatch.setattr(quant_linear, "_MM", dict(quant_linear._FORMS[0]))
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
    assert quant_linear._MM == {"fast_accum": not no_fast, "pad_rows": pad, "bias": not no_bias}
    last = calls[-1]
    assert last == ((48 if pad else 40), not no_bias, not no_fast)


def test_out_of_memory_is_raised_not_learnt_as_a_missing_feature(monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(torch, "_scaled_mm", oom, raising=False)
    monkeypatch.setattr(quant_linear, "_MM", dict(quant_linear._FORMS[0]))
    xq = torch.zeros(16, 32).to(torch.float8_e4m3fn)
    w = torch.zeros(24, 32).to(torch.float8_e4m3fn)
    with pytest.raises(torch.OutOfMemoryError):
        quant_linear.scaled_mm(xq, w.t(), torch.ones(16, 1), torch.ones(1, 24), None, torch.float32)
    assert quant_linear._MM == quant_linear._FORMS[0]
