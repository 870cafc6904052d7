"""The optional attention paths on CPU: 'auto' resolution, the fa3-fwd module name, the fp8 transforms
(exact in real arithmetic: checked with a stand-in kernel that de-quantises), the exact cross-attention
back-end of the 8-bit paths, and int8 through comfy-kitchen's layout."""
import importlib
import sys
import types

import torch
import torch.nn.functional as F

from dit_helpers import case_for, case_inputs, shared_tiny_model, tiny_model

attention_module = importlib.import_module("infinitetalk_lipsync.pipeline.dit.attention")
kernels = importlib.import_module("infinitetalk_lipsync.pipeline.dit.attention_kernels")


def _qkv(seed=0, n=(64, 80)):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, n[0], 4, 32, generator=gen)
    k = torch.randn(1, n[1], 4, 32, generator=gen) + 3 * torch.randn(1, 1, 4, 32, generator=gen)
    v = torch.randn(1, n[1], 4, 32, generator=gen) + 5 * torch.randn(1, 1, 4, 32, generator=gen)
    return q, k, v


def _fake_fa3(calls):
    """A stand-in for fa3_fwd_interface: de-quantises with the descales, then exact attention."""
    def flash_attn_func(q, k, v, q_descale=None, k_descale=None, **kw):
        calls.append((q.dtype, None if q_descale is None else tuple(q_descale.shape)))
        qf, kf, vf = q.float(), k.float(), v.float()
        if q_descale is not None:
            qf, kf = qf * q_descale[:, None, :, None], kf * k_descale[:, None, :, None]
        out = F.scaled_dot_product_attention(qf.transpose(1, 2), kf.transpose(1, 2), vf.transpose(1, 2))
        return out.transpose(1, 2).to(torch.bfloat16)
    return types.SimpleNamespace(flash_attn_func=flash_attn_func)


def test_fp8_transforms_are_exact_up_to_fp8_rounding_and_beat_a_naive_cast():
    q, k, v = _qkv()
    ref = attention_module.sdpa(q, k, v)
    q8, k8, v8, qs, ks, vs, vm = kernels.fp8_operands(q, k, v)
    assert q8.dtype == k8.dtype == v8.dtype == torch.float8_e4m3fn and qs.shape == ks.shape == (1, 4)
    assert vs.shape == vm.shape == (1, 1, 4, 32)
    fake = _fake_fa3([])
    out = kernels.fp8_finish(fake.flash_attn_func(q8, k8, v8, q_descale=qs, k_descale=ks), vs, vm, torch.float32)
    err = float((out - ref).norm() / ref.norm())
    naive = fake.flash_attn_func(q.to(torch.float8_e4m3fn), k.to(torch.float8_e4m3fn), v.to(torch.float8_e4m3fn))
    naive_err = float((naive.float() - ref).norm() / ref.norm())
    assert err < 2e-2 and err < naive_err / 2, (err, naive_err)


def test_fa3_fwd_wheel_module_is_found_and_fp8_kernel_calls_it_with_descales(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "flash_attn_interface", None)  # no source build
    monkeypatch.setitem(sys.modules, "fa3_fwd_interface", _fake_fa3(calls))
    monkeypatch.setattr(kernels, "_compiled", {"fp8 attention prep": kernels.fp8_operands,
                                               "fp8 attention finish": kernels.fp8_finish})
    assert kernels.fa3_available()
    q, k, v = (t.to(torch.bfloat16) for t in _qkv())
    out = kernels.load_fa3_fp8()(q, k, v)
    assert calls == [(torch.float8_e4m3fn, (1, 4))] and out.dtype == torch.bfloat16
    bf16 = kernels.load_flash_attn()(q, k, v)
    assert calls[-1] == (torch.bfloat16, None)
    ref = attention_module.sdpa(q.float(), k.float(), v.float())
    assert float((out.float() - ref).norm() / ref.norm()) < 3e-2
    assert float((bf16.float() - ref).norm() / ref.norm()) < 1e-2


def test_auto_is_sdpa_without_a_hopper_gpu_and_flash_attn_with_one(monkeypatch):
    assert attention_module.auto_backend() == "sdpa"  # CPU-only CI
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(kernels, "fa3_available", lambda: True)
    assert attention_module.auto_backend("cuda:0") == "flash_attn"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 9))
    assert attention_module.auto_backend("cuda:0") == "sdpa"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(kernels, "fa3_available", lambda: False)
    assert attention_module.auto_backend("cuda:0") == "sdpa"


def test_auto_model_on_cpu_matches_sdpa_without_warnings():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = tiny_model(attention="auto")
        assert model.attention_backend == "sdpa"
        with torch.no_grad():
            out = model(**case_inputs(case_for("one")))
    with torch.no_grad():
        assert torch.equal(out, shared_tiny_model()(**case_inputs(case_for("one"))))


def test_8bit_paths_keep_cross_attention_exact(monkeypatch):
    seen = []

    def fake(q, k, v):
        seen.append(k.shape[1])
        return attention_module.sdpa(q, k, v)

    monkeypatch.setattr(attention_module, "_IMPLS", {"fa3_fp8": fake, "flash_attn": attention_module.sdpa})
    model = tiny_model(attention="fa3_fp8")
    assert (model.attention_backend, model.cross_attention_backend) == ("fa3_fp8", "flash_attn")
    inputs = case_inputs(case_for("one"))
    with torch.no_grad():
        model(**inputs)
    video_tokens = inputs["x"].shape[2] * (inputs["x"].shape[3] // 2) * (inputs["x"].shape[4] // 2)
    assert seen and set(seen) == {video_tokens}  # self-attention only
    monkeypatch.setattr(attention_module, "_IMPLS", {"int8": fake})
    assert tiny_model(attention="int8").cross_attention_backend == "sdpa"


def test_int8_kernel_gets_bhsd_and_returns_bshd(monkeypatch):
    seen = []

    def int8_attention(q, k, v):
        seen.append((tuple(q.shape), q.is_contiguous()))
        return F.scaled_dot_product_attention(q, k, v)

    fake = types.SimpleNamespace(int8_attention=int8_attention, int8_attention_is_available=lambda: True)
    monkeypatch.setitem(sys.modules, "comfy_kitchen", fake)
    q, k, v = _qkv()
    out = kernels.load_int8()(q, k, v)
    assert seen == [((1, 4, 64, 32), True)]
    torch.testing.assert_close(out, attention_module.sdpa(q, k, v))
    fake.int8_attention_is_available = lambda: False
    monkeypatch.setattr(attention_module, "_IMPLS", {})
    monkeypatch.setattr(attention_module, "_WARNED", set())
    import pytest
    with pytest.warns(RuntimeWarning, match="'int8' requested but not importable.*does not support this GPU"):
        assert attention_module.check_backend("int8") == "sdpa"


def test_fp8_scales_from_one_pass_extremes_equal_the_centred_definition():
    """max(max - mean, mean - min) per channel is max |x - mean| exactly, so the one-pass scales are the
    two-pass ones bit for bit (and so are the e4m3 operands)."""
    q, k, v = (t.to(torch.bfloat16) for t in _qkv(seed=3, n=(96, 96)))
    q8, k8, v8, qs, ks, vs, vm = kernels.fp8_operands(q, k, v)
    kc = k.float() - k.float().mean(dim=1, keepdim=True)
    vc = v.float() - vm
    assert torch.equal(ks, kc.abs().amax(dim=(1, 3)).clamp_min(1e-6) / kernels.E4M3_MAX)
    assert torch.equal(vs, vc.abs().amax(dim=1, keepdim=True).clamp_min(1e-6) / kernels.E4M3_MAX)
    assert torch.equal(k8.float(), (kc / ks[:, None, :, None]).to(torch.float8_e4m3fn).float())
    assert torch.equal(v8.float(), (vc / vs).to(torch.float8_e4m3fn).float())
