"""Step caching: each rule's skip pattern against a direct transcription of the published loops
(TeaCache4Wan2.1, MagCache4Wan2.1, EasyCache), the residual reuse, and the loop/node wiring."""
import numpy as np
import pytest
import torch

from infinitetalk_lipsync.pipeline.sampler import step_cache as sc


def _teacache_reference(e0s, coefficients, thresh, ret_steps=5):
    """TeaCache4Wan2.1 (use_ret_steps=True, cutoff = all steps), the cond branch, one entry per step."""
    rescale = np.poly1d(coefficients)
    acc, prev, calc = 0.0, None, []
    for cnt, inp in enumerate(e0s):
        if cnt < ret_steps:
            should, acc = True, 0.0
        else:
            acc += rescale(float(np.abs(inp - prev).mean() / np.abs(prev).mean()))
            should = not acc < thresh
            if should:
                acc = 0.0
        prev = inp
        calc.append(should)
    return calc


def _magcache_reference(ratios, steps, thresh, k_max, retention):
    """MagCache4Wan2.1, the cond branch (ratios already at this schedule's length)."""
    ratio, err, k, calc = 1.0, 0.0, 0, []
    for cnt in range(steps):
        if cnt >= int(steps * retention):
            ratio *= ratios[cnt]
            err += abs(1 - ratio)
            k += 1
            if err < thresh and k <= k_max:
                calc.append(False)
                continue
            ratio, err, k = 1.0, 0.0, 0
        calc.append(True)
    return calc


def _drive(cache, steps, start=0, branches=2, e0s=None, hidden=None):
    """Run the cache over a schedule with a fake 'blocks' (h -> 2h + step); returns per-step computed flags."""
    computed = []
    for i in range(start, steps):
        cache.begin_step(i)
        ran = []
        for b in range(branches):
            h = hidden(i) if hidden else torch.ones(1, 4, 8) * (b + 1)
            e0 = e0s[i - start] if e0s is not None else torch.zeros(1, 6, 8)
            cache.run_blocks(h, None, e0, lambda x: ran.append(1) or 2 * x + i)
        assert len(ran) in (0, branches)  # one decision for all branches of a step
        computed.append(bool(ran))
    return computed


@pytest.mark.parametrize("table,thresh", [("480", 0.2), ("720", 0.1), ("480", 0.05)])
def test_teacache_matches_reference_loop(table, thresh):
    t = torch.linspace(1000, 50, 30)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(1, 6, 8, generator=gen)
    e0s = [base * (1 + 0.02 * float(s) / 1000) + 0.001 * s / 1000 for s in t]
    cache = sc.StepCache("teacache", thresh, 30, 0, 832 * 480 if table == "480" else 1280 * 720)
    got = _drive(cache, 30, e0s=e0s)
    ref = _teacache_reference([e.numpy() for e in e0s], sc.TEACACHE_E0[table], thresh)
    assert got == ref
    assert not all(ref) or thresh < 0.1  # the test exercises skipping
    assert cache.skipped == 2 * ref.count(False) and cache.calls == 60


def test_teacache_polynomials_are_the_published_ones():
    assert sc.poly(sc.TEACACHE_E0["480"], 0.01) == pytest.approx(np.poly1d(sc.TEACACHE_E0["480"])(0.01))
    assert sc.TEACACHE_E0["480"][0] == 2.57151496e+05 and sc.TEACACHE_E0["720"][-1] == -4.17769401e-02


@pytest.mark.parametrize("steps,thresh,k", [(40, 0.12, 2), (16, 0.24, 6), (30, 0.06, 4)])
def test_magcache_matches_reference_loop(steps, thresh, k, monkeypatch):
    monkeypatch.setattr(sc, "MAG_K", k)
    cache = sc.StepCache("magcache", thresh, steps, 0, 832 * 480)
    cache.rule.k = k
    ratios = sc.nearest_interp(sc.MAG_RATIOS["480"][0::2], steps)
    assert _drive(cache, steps) == _magcache_reference(ratios, steps, thresh, k, sc.MAG_RETENTION)
    assert cache.skipped > 0


def test_magcache_tables_and_interpolation():
    assert len(sc.MAG_RATIOS["480"]) == len(sc.MAG_RATIOS["720"]) == 80
    src = np.array(sc.MAG_RATIOS["720"][0::2])
    for n in (4, 16, 40, 50):
        idx = np.round(np.arange(n) * (len(src) - 1) / (n - 1)).astype(int)  # the reference nearest_interp
        assert sc.nearest_interp(list(src), n) == list(src[idx])


def test_easycache_rule_follows_its_formula():
    rule = sc.EasyCacheRule(threshold=0.3)
    steps, calc = 12, []
    h = lambda i: torch.full((1, 2, 2), 10.0 - 0.1 * i)  # noqa: E731
    f = lambda x: 3 * x  # noqa: E731  (blocks: k = 1 exactly)
    acc, k, prev_in, prev_out, last_in = 0.0, None, None, None, None
    for i in range(steps):
        forced = i < round(steps * sc.EASY_RET_FRACTION) or i == steps - 1
        skip = False
        if not forced and k is not None:
            acc += k * float((h(i) - last_in).abs().mean() / prev_out.abs().mean())
            skip = acc < 0.3
        if not skip:
            acc = 0.0
        last_in = h(i)
        assert rule.skip(i, steps, h(i)) == skip
        if not skip:
            out = f(h(i))
            if prev_in is not None:
                k = float((out - prev_out).abs().mean() / prev_out.abs().mean()) / \
                    float((h(i) - prev_in).abs().mean() / prev_in.abs().mean())
            rule.computed(h(i), out)
            prev_in, prev_out = h(i), out
        calc.append(not skip)
    assert calc.count(False) > 0 and calc[-1]


def test_skipped_step_reuses_each_branch_residual():
    cache = sc.StepCache("magcache", 10.0, 10, 0, 832 * 480)  # skips whenever allowed
    outs = {}
    for i in range(4):
        cache.begin_step(i)
        for b in range(2):
            h = torch.full((1, 3, 2), float(b + 10 * i))
            outs[(i, b)] = cache.run_blocks(h, None, None, lambda x, b=b: x + 100 * (b + 1))
    # step 2 is the first MagCache may skip (retention 0.2 of 10 steps = 2): residual of step 1 per branch
    assert cache.skipped == 4 and torch.equal(outs[(2, 1)], torch.full((1, 3, 2), 21.0 + 200))


def test_denoise_run_counts_steps_from_its_start_and_first_run_step_computes():
    cache = sc.StepCache("teacache", 5.0, 40, 24, 832 * 480)
    base = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(1))
    got = _drive(cache, 40, start=24, e0s=[base * (1 + 1e-4 * i) for i in range(16)])
    assert got[:sc.TEACACHE_RET_STEPS] == [True] * sc.TEACACHE_RET_STEPS and not all(got)


def test_unknown_method_and_default_thresholds():
    with pytest.raises(ValueError, match="choose one of"):
        sc.StepCache("fastcache", 0.1, 10, 0, 1)
    assert sc.StepCache("teacache", 0.0, 10, 0, 1).rule.threshold == 0.2
    assert sc.table_for(960 * 960) == "720" and sc.table_for(640 * 640) == "480"


def test_attached_sets_and_clears_the_model_hook_and_reports():
    class Model:
        step_cache = None

    model, stats = Model(), {}
    with sc.attached(model, "easycache", 0.0, 10, 0, 100, stats) as cache:
        assert model.step_cache is cache
        cache.calls, cache.skipped = 20, 5
    assert model.step_cache is None and stats == {"forwards": 20, "forwards_skipped": 5}
    assert sc.summary(stats) == "step cache: 5 of 20 model calls skipped (25 %)"
    with sc.attached(model, "off", 0.0, 10, 0, 100, stats) as cache:
        assert cache is None and model.step_cache is None


def test_sampler_with_step_cache_reports_skips_and_matches_without_where_nothing_is_skipped():
    import dataclasses

    import golden
    from codec_standins import TinyClip, TinyCodec
    from infinitetalk_lipsync.pipeline.dit import DiTConfig, InfiniteTalkDiT
    from infinitetalk_lipsync.pipeline.sampler.loop import Job, Settings, run
    from infinitetalk_lipsync.pipeline.sampler.source import Source
    from sampler_fakes import audio_embeds, video

    cfg = DiTConfig.from_dict(golden.case("a_dit_tiny")["config"])
    model = InfiniteTalkDiT(cfg).eval()
    model.load_state_dict(golden.tensors("dit_tiny_weights.safetensors"))
    h, w = (8 * n for n in golden.case("a_dit_tiny")["cases"][0]["lat_hw"])

    def job(method, threshold):
        return Job(context=torch.randn(7, cfg.text_dim, generator=torch.Generator().manual_seed(1)),
                   context_null=torch.randn(5, cfg.text_dim, generator=torch.Generator().manual_seed(2)),
                   audio=audio_embeds([9], layers=12, dim=768), source=Source(video(1, h, w), 25.0, 25.0, h, w),
                   settings=Settings(steps=6, shift=5.0, cfg=1.0, audio_cfg=4.0, window=9, motion=5,
                                     colour_strength=0.0, step_cache=method, cache_threshold=threshold))

    with torch.no_grad():
        plain, _, _ = run(model, TinyCodec(), TinyClip(), job("off", 0.0))
        cached_job = job("magcache", 1.0)
        cached, _, _ = run(model, TinyCodec(), TinyClip(), cached_job)
        none_job = job("magcache", 1e-9)  # never below threshold: every step computed
        same, _, _ = run(model, TinyCodec(), TinyClip(), none_job)
    assert cached_job.stats["forwards"] == 12 and cached_job.stats["forwards_skipped"] > 0
    assert none_job.stats["forwards_skipped"] == 0 and torch.equal(same, plain)
    assert model.step_cache is None and cached.shape == plain.shape
    with pytest.raises(ValueError, match="step cache must be one of"):
        run(model, TinyCodec(), TinyClip(), dataclasses.replace(job("off", 0.0),
                                                                 settings=Settings(step_cache="bogus")))
