"""Golden parity of the DiT (fp32, CPU) against the official model's outputs on tiny seeded weights."""
import pytest
import torch

import golden
from dit_helpers import case_inputs, case_names, shared_tiny_model
from infinitetalk_lipsync.pipeline.dit.audio import (AudioProjModel, group_audio_windows, reference_attention_map,
                                                     token_masks)


def _run_with_taps(model, inputs):
    """Forward pass that records the intermediates the golden file holds (``dbg.*``)."""
    taps, handles = {}, []

    def tap(name, pick=lambda out: out):
        return lambda module, args, out: taps.__setitem__(name, pick(out))

    handles.append(model.time_embedding.register_forward_hook(tap("time_e")))
    handles.append(model.time_projection.register_forward_hook(tap("time_e0", lambda o: o.unflatten(1, (6, -1)))))
    handles.append(model.text_embedding.register_forward_hook(tap("text_embedding")))
    handles.append(model.img_emb.register_forward_hook(tap("img_emb")))
    handles.append(model.audio_proj.register_forward_hook(tap("audio_embedding")))
    handles.append(model.head.register_forward_hook(tap("head_out")))
    for i, block in enumerate(model.blocks):
        handles.append(block.register_forward_hook(tap(f"block{i}.out")))
        handles.append(block.self_attn.register_forward_hook(tap(f"block{i}.self_attn")))
        handles.append(block.audio_cross_attn.register_forward_hook(tap(f"block{i}.audio_cross_attn_out")))
    try:
        with torch.no_grad():
            out = model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return out, taps


@pytest.mark.parametrize("name", case_names())
def test_dit_matches_official(name):
    model = shared_tiny_model()
    inputs = case_inputs(name)
    ref = golden.tensors("dit_tiny_cases.safetensors")
    out, taps = _run_with_taps(model, inputs)

    # Intermediates first, so a failure points at the first stage that drifts.
    for key in ("time_e", "time_e0", "text_embedding", "img_emb", "audio_embedding"):
        if f"{name}.dbg.{key}" in ref:
            golden.assert_close(taps[key], ref[f"{name}.dbg.{key}"], what=f"{name} {key}")
    grid = model.config
    n_tokens = inputs["x"].shape[2] * (inputs["x"].shape[3] // 2) * (inputs["x"].shape[4] // 2)
    frame_tokens = n_tokens // inputs["x"].shape[2]
    masks = token_masks(inputs["speaker_masks"], (inputs["x"].shape[3] // 2, inputs["x"].shape[4] // 2),
                        torch.float32)
    for i in range(grid.num_layers):
        sa_out, q, k = taps[f"block{i}.self_attn"]
        golden.assert_close(sa_out, ref[f"{name}.dbg.block{i}.self_attn_out"], what=f"{name} block{i} self_attn")
        # The map is only used for 2 speakers, but the official code computes it always: check it on every case.
        ref_map = reference_attention_map(q, k[:, :frame_tokens], masks)[0]
        golden.assert_close(ref_map, ref[f"{name}.dbg.block{i}.x_ref_attn_map"], what=f"{name} block{i} ref map")
        golden.assert_close(taps[f"block{i}.audio_cross_attn_out"], ref[f"{name}.dbg.block{i}.audio_cross_attn_out"],
                            what=f"{name} block{i} audio attn")
        golden.assert_close(taps[f"block{i}.out"], ref[f"{name}.dbg.block{i}.out"], what=f"{name} block{i} out")
    golden.assert_close(taps["head_out"], ref[f"{name}.dbg.head_out"], what=f"{name} head")
    golden.assert_close(out, ref[f"{name}.out"], what=f"{name} output")
    assert out.dtype == torch.float32


def test_audio_windows_and_projection_match_official():
    model = shared_tiny_model()
    ref = golden.tensors("audio_proj.safetensors")
    cfg = model.config
    # the projection's input was captured inside one of the DiT cases: our regrouping of that case's
    # audio must reproduce it exactly
    cases = golden.tensors("dit_tiny_cases.safetensors")
    grouped = [group_audio_windows(cases[f"{name}.audio"], cfg.audio_window, cfg.vae_scale) for name in case_names()]
    assert any(first.shape == ref["audio_embeds"].shape and torch.equal(first, ref["audio_embeds"])
               and torch.equal(later, ref["audio_embeds_vf"]) for first, later in grouped)

    proj = AudioProjModel(cfg)
    proj.load_state_dict({k[len("audio_proj."):]: v for k, v in golden.tensors("dit_tiny_weights.safetensors").items()
                          if k.startswith("audio_proj.")}, strict=True)
    with torch.no_grad():
        out = proj(ref["audio_embeds"], ref["audio_embeds_vf"])
    golden.assert_close(out, ref["out"], what="audio_proj")
