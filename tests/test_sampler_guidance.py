"""2-call / 3-call CFG and APG against the official loop's golden numbers."""
import torch

import golden
from infinitetalk_lipsync.pipeline.sampler.guidance import Guidance, branch_names


def _steps(g, run) -> int:
    return len({k.split(".")[1] for k in g if k.startswith(run + ".step")})


def test_every_golden_guidance_run_matches():
    g = golden.tensors("guidance.safetensors")
    runs = golden.case("g_guidance")
    assert runs and {len(c["branches_per_step"]) for c in runs.values()} == {2, 3}  # both CFG forms covered
    for run, c in runs.items():
        guide = Guidance(c["text_guide_scale"], c["audio_guide_scale"], c["use_apg"], c["apg_momentum"],
                         c["apg_norm_threshold"])
        assert list(guide.branches) == c["branches_per_step"]
        assert _steps(g, run) >= 1
        for step in range(_steps(g, run)):
            v = guide({b: g[f"{run}.step{step}.{b}"] for b in guide.branches})
            golden.assert_close(v, g[f"{run}.step{step}.noise_pred"], rel=1e-6, what=f"{run} step {step}")


def test_apg_buffers_match_per_call():
    g = golden.tensors("guidance.safetensors")
    runs = {run: c for run, c in golden.case("g_guidance").items() if c["use_apg"]}
    assert runs
    for run, c in runs.items():
        guide = Guidance(c["text_guide_scale"], c["audio_guide_scale"], True, c["apg_momentum"], c["apg_norm_threshold"])
        # official call order per step: the text buffer (3-branch form only), then the audio buffer
        buffers = [guide.apg_text, guide.apg_audio] if len(guide.branches) == 3 else [guide.apg_audio]
        q = 0
        for step in range(_steps(g, run)):
            guide({b: g[f"{run}.step{step}.{b}"] for b in guide.branches})
            for apg in buffers:
                golden.assert_close(apg.running, g[f"{run}.apg_call{q}.running_average"], rel=1e-6, what=f"{run} {q}")
                norm = apg.running.norm().item()
                assert abs(norm - c["apg_running_average_norms"][q]) < 1e-3 * norm
                q += 1


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
