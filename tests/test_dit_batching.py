"""CFG batching: one forward over several conditions equals one forward per condition."""
import pytest
import torch

import golden
from dit_helpers import case_for, case_inputs, shared_tiny_model


def _single(model, **inputs):
    with torch.no_grad():
        return model(**inputs)


def test_batch_of_three_branches_equals_three_forwards():
    model = shared_tiny_model()
    base = case_inputs(case_for("one"))
    gen = torch.Generator().manual_seed(0)
    contexts = [base["context"], torch.zeros_like(base["context"]),
                torch.randn(base["context"].shape, generator=gen)]
    audios = [base["audio"], base["audio"], torch.zeros_like(base["audio"])]
    times = torch.tensor([1000.0, 1000.0, 412.5])
    xs = [base["x"], base["x"], torch.randn(base["x"].shape, generator=gen)]

    singles = [_single(model, **{**base, "x": xs[i], "t": times[i:i + 1], "context": contexts[i],
                                 "audio": audios[i]}) for i in range(3)]
    batched = _single(model, **{**base, "x": torch.cat(xs), "t": times, "context": torch.cat(contexts),
                                "audio": torch.cat(audios)})
    assert batched.shape == (3, *singles[0].shape[1:])
    for i in range(3):
        golden.assert_close(batched[i:i + 1], singles[i], what=f"row {i}")
    golden.assert_close(singles[0], golden.tensors("dit_tiny_cases.safetensors")[f"{case_for('one')}.out"], what="row 0 = golden")


def test_two_speaker_cond_batched_with_single_zero_speaker_uncond():
    """The official 2-speaker drop-audio branch passes ONE zero speaker (no L-RoPE): a list of rows."""
    model = shared_tiny_model()
    cond = case_inputs(case_for("two"))
    zero = torch.zeros_like(cond["audio"][0, -1:])
    single_cond = _single(model, **cond)
    single_uncond = _single(model, **{**cond, "audio": zero[None]})
    batched = _single(model, **{**cond, "x": cond["x"].expand(2, -1, -1, -1, -1),
                                "audio": [cond["audio"][0], zero]})
    golden.assert_close(single_cond, golden.tensors("dit_tiny_cases.safetensors")[f"{case_for('two')}.out"], what="cond golden")
    golden.assert_close(batched[:1], single_cond, what="2-speaker row")
    golden.assert_close(batched[1:], single_uncond, what="zero-speaker row")


def test_bf16_compute_follows_to_and_keeps_fp32_output():
    model = shared_tiny_model()
    inputs = case_inputs(case_for("two"))
    ref = golden.tensors("dit_tiny_cases.safetensors")[f"{case_for('two')}.out"]
    bf16 = type(model)(model.config).eval()
    bf16.load_state_dict(model.state_dict())
    bf16.to(torch.bfloat16)
    assert bf16.compute_dtype == torch.bfloat16
    out = _single(bf16, **inputs)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel < 2e-2, rel  # bf16 rounding (measured ~0.75%); a wrong path would be O(1)


@pytest.mark.parametrize("change, message", [
    (lambda i: dict(audio=torch.zeros(*i["audio"].shape[:2], i["audio"].shape[2] - 1, *i["audio"].shape[3:])),
     "audio must be"),
    (lambda i: dict(speaker_masks=None), "speaker_masks must be"),
    (lambda i: dict(speaker_masks=torch.zeros_like(i["speaker_masks"])), "mask is empty"),
    (lambda i: dict(context=torch.zeros(1, shared_tiny_model().config.text_len + 88, i["context"].shape[-1])),
     "context must be"),
    (lambda i: dict(y=i["y"][:, :, :-1]), "y must be"),
    (lambda i: dict(t=torch.zeros(3)), "t must have"),
    (lambda i: dict(clip_fea=torch.zeros(1, 300, 1280)), "clip_fea must be"),
])
def test_bad_inputs_raise_clear_errors(change, message):
    inputs = case_inputs(case_for("two"))
    with pytest.raises(ValueError, match=message):
        _single(shared_tiny_model(), **{**inputs, **change(inputs)})


def test_forward_with_autograd_enabled_gives_the_same_velocity():
    model = shared_tiny_model()
    inputs = case_inputs(case_for("one"))
    out = model(**inputs)  # parameters require grad: the fused no-temporary path must step aside
    golden.assert_close(out.detach(), _single(model, **inputs), what="grad-enabled forward")


def test_one_speaker_never_computes_the_reference_attention_map(monkeypatch):
    import importlib

    blocks = importlib.import_module("infinitetalk_lipsync.pipeline.dit.blocks")
    calls = []
    real = blocks.reference_attention_map
    monkeypatch.setattr(blocks, "reference_attention_map", lambda *a: calls.append(1) or real(*a))
    model = shared_tiny_model()
    _single(model, **case_inputs(case_for("one")))
    _single(model, **case_inputs(case_for("zero")))  # 2-speaker masks, one zero speaker: still no map
    assert calls == []
    _single(model, **case_inputs(case_for("two")))
    assert len(calls) == model.config.num_layers


def test_a_second_image_appends_its_clip_tokens():
    """clip_fea of k images (reference + face close-up) is attended as one image context.

    Attending to every key twice gives each the same softmax weight as once, so the reference
    image's tokens repeated must give the single-image output; a different second image must not.
    """
    model, inputs = shared_tiny_model(), case_inputs(case_for("one"))
    ref = _single(model, **inputs)
    twice = _single(model, **{**inputs, "clip_fea": inputs["clip_fea"].repeat(1, 2, 1)})
    golden.assert_close(twice, ref, what="reference image tokens twice")
    other = _single(model, **{**inputs, "clip_fea": torch.cat([inputs["clip_fea"], -inputs["clip_fea"]], dim=1)})
    assert (other - ref).abs().max() > 1e-3
