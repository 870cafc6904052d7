"""Attention back-ends: SDPA reference, and fallback to SDPA with one warning."""
import importlib
import warnings

import pytest
import torch

import golden
from dit_helpers import case_for, case_inputs, shared_tiny_model, tiny_model
from infinitetalk_lipsync.pipeline.dit.attention import attention

# The package re-exports the function under the module's name: fetch the module itself.
attention_module = importlib.import_module("infinitetalk_lipsync.pipeline.dit.attention")


def _qkv(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, n, 4, 16, generator=gen) for n in (10, 7, 7)]


def test_sdpa_matches_naive_softmax_attention():
    q, k, v = _qkv()
    weights = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / 4.0, dim=-1)
    naive = torch.einsum("bhqk,bkhd->bqhd", weights, v)
    golden.assert_close(attention(q, k, v), naive, what="sdpa")


@pytest.mark.parametrize("backend", ["flash_attn", "sage"])
def test_unavailable_backend_warns_once_and_matches_sdpa(backend, monkeypatch):
    monkeypatch.setattr(attention_module, "_WARNED", set())
    monkeypatch.setitem(attention_module._LOADERS, backend, lambda: (_ for _ in ()).throw(ImportError("absent")))
    monkeypatch.setattr(attention_module, "_IMPLS", {})
    q, k, v = _qkv()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = attention(q, k, v, backend)
        second = attention(q, k, v, backend)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and backend in messages[0] and "sdpa" in messages[0], messages
    assert torch.equal(first, attention(q, k, v)) and torch.equal(second, first)


def test_failing_backend_falls_back_with_one_warning(monkeypatch):
    def broken(q, k, v):
        raise RuntimeError("FlashAttention only supports fp16 and bf16")

    monkeypatch.setattr(attention_module, "_WARNED", set())
    monkeypatch.setattr(attention_module, "_IMPLS", {"flash_attn": broken})
    q, k, v = _qkv()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = [attention(q, k, v, "flash_attn") for _ in range(3)]
    assert len(caught) == 1 and "fp16 and bf16" in str(caught[0].message)
    assert all(torch.equal(o, attention(q, k, v)) for o in out)


def test_model_keeps_backend_choice_and_says_when_it_cannot(monkeypatch):
    monkeypatch.setitem(attention_module._LOADERS, "sage", lambda: (_ for _ in ()).throw(ImportError("absent")))
    monkeypatch.setattr(attention_module, "_IMPLS", {})
    with pytest.warns(RuntimeWarning, match="'sage' requested but not importable.*'sdpa'"):
        model = tiny_model(attention="sage")
    assert model.requested_attention_backend == "sage" and model.attention_backend == "sdpa"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no further warning per forward
        with torch.no_grad():
            out = model(**case_inputs(case_for("one")))
    with torch.no_grad():
        ref = shared_tiny_model()(**case_inputs(case_for("one")))
    assert torch.equal(out, ref)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown"):
        attention(*_qkv(), backend="xformers")
    with pytest.raises(ValueError, match="choose one of"):
        shared_tiny_model().set_attention_backend("fa4")


def test_available_backend_gets_bshd_tensors_and_its_result_is_used(monkeypatch):
    seen = []

    def fake_kernel(q, k, v):  # stands in for flash_attn_func / sageattn: [B, S, H, d] in and out
        seen.append((q.shape, k.shape, v.shape))
        return attention_module.sdpa(q, k, v) * 2

    monkeypatch.setattr(attention_module, "_IMPLS", {"sage": fake_kernel})
    q, k, v = _qkv()
    out = attention(q, k, v, "sage")
    assert seen == [(q.shape, k.shape, v.shape)]
    assert torch.equal(out, 2 * attention(q, k, v))
