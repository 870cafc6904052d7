"""ComfyUI 0.38 encodes/decodes the Wan 2.1 VAE in 2-frame chunks (frame 0, then 2 frames; latent 0, then 2 latents)
where the official code and ComfyUI <= 0.8 use 1+4 frames and 1 latent at a time. Both schedules, run causally on the
golden small VAE (tests/wan_vae_stream.py), reproduce the official encode/decode within the fp32 tolerance (both schedules keep every
time convolution's last 2 input frames, so they compute the same causal convolutions): the chunking changes only the
floating-point order, so our VAE parity (measured through core's VAE on 0.3.64 / 0.8.0 in
tests/integration/test_sampler_workflow.py) holds for 0.38's chunking too. The printed figures are the difference."""
import pytest
import torch

import golden
import wan_vae_stream as ws

TOL = 1e-5


SMALL = golden.case("d_vae")["small_dim8"]  # the golden small VAE: its weights file and cases


@pytest.fixture(scope="module")
def small_vae():
    return golden.tensors(SMALL["weights"]), golden.tensors("vae_cases.safetensors")


def _err(a, b):
    return ((a - b).abs() / b.abs().clamp(min=1)).max().item()  # |a-b| <= TOL * max(1, |ref|)


@pytest.mark.parametrize("case", sorted(SMALL["results"]))
@pytest.mark.parametrize("schedule", ["1+4", "1+2"])
def test_both_chunk_schedules_match_the_official_vae(small_vae, case, schedule):
    sd, g = small_vae
    with torch.no_grad():
        mu = ws.encode(sd, g[f"video.{case}"][None], schedule)[0]
        decoded = ws.decode(sd, g[f"small.{case}.mu_raw"][None], schedule)[0]
    # 9 frames in 1+2 chunks: frame 0, then 4 pairs; each time-downsampling layer holds a lone frame back twice
    assert mu.shape == g[f"small.{case}.mu_raw"].shape and decoded.shape == g[f"small.{case}.decoded_preclamp"].shape
    errors = (_err(mu, g[f"small.{case}.mu_raw"]), _err(decoded, g[f"small.{case}.decoded_preclamp"]))
    print(f"\n{schedule} chunks, {case}: encode err {errors[0]:.2e}, decode err {errors[1]:.2e}")
    assert max(errors) <= TOL, errors

