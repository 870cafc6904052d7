"""2-call / 3-call CFG and APG against the official loop's golden numbers."""
import torch

import golden
from infinitetalk_lipsync.pipeline.sampler.guidance import Guidance, branch_names


def test_every_golden_guidance_run_matches():
    g = golden.tensors("guidance.safetensors")
    runs = golden.case("g_guidance")
    assert len(runs) == 4
    for run, c in runs.items():
        guide = Guidance(c["text_guide_scale"], c["audio_guide_scale"], c["use_apg"], c["apg_momentum"],
                         c["apg_norm_threshold"])
        assert list(guide.branches) == c["branches_per_step"]
        for step in range(2):
            v = guide({b: g[f"{run}.step{step}.{b}"] for b in guide.branches})
            golden.assert_close(v, g[f"{run}.step{step}.noise_pred"], rel=1e-6, what=f"{run} step {step}")


def test_apg_buffers_match_per_call():
    g = golden.tensors("guidance.safetensors")
    run = "apg_text5_audio4"
    c = golden.case("g_guidance")[run]
    guide = Guidance(c["text_guide_scale"], c["audio_guide_scale"], True, c["apg_momentum"], c["apg_norm_threshold"])
    for step in range(2):
        out = {b: g[f"{run}.step{step}.{b}"] for b in guide.branches}
        guide(out)
        for q, apg in ((2 * step, guide.apg_text), (2 * step + 1, guide.apg_audio)):
            golden.assert_close(apg.running, g[f"{run}.apg_call{q}.running_average"], rel=1e-6)
            norm = apg.running.norm().item()
            assert abs(norm - c["apg_running_average_norms"][q]) < 1e-3 * norm


def test_branch_count_follows_text_scale():
    assert branch_names(1.0) == ("cond", "drop_audio")
    assert branch_names(1.0 + 1e-12) == ("cond", "drop_audio")
    assert branch_names(5.0) == ("cond", "drop_text", "uncond")


def test_apg_with_identity_settings_reduces_to_vanilla_cfg_direction():
    """With momentum 0 and no clipping, APG keeps only the part of the difference orthogonal to cond."""
    gen = torch.Generator().manual_seed(0)
    out = {b: torch.randn(16, 2, 4, 4, generator=gen) for b in ("cond", "drop_audio")}
    v = Guidance(1.0, 3.0, apg=True, apg_momentum=0.0, apg_norm_threshold=0.0)(out)
    diff = (v - out["cond"]) / 2.0
    assert abs(float((diff * out["cond"]).sum())) < 1e-3
