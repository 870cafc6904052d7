"""Sequence and guidance parallelism of the DiT on CPU processes (gloo): the same forward as one process.

World sizes come from the golden model's head count (every divisor up to 4 that splits the heads);
the golden tiny DiT's cases are run through worker pools and compared with the single-process
forward and the golden output.
"""
import pytest
import torch

import golden
from dit_helpers import case_inputs, case_names, shared_tiny_model, tiny_config
from infinitetalk_lipsync.pipeline.parallel.layout import check_world, group_rows, guidance_groups
from infinitetalk_lipsync.pipeline.parallel.pool import ParallelDiT, WorkerError
from infinitetalk_lipsync.pipeline.parallel.sequence import slice_sizes

WORLDS = [w for w in (2, 4) if check_world(w, tiny_config().num_heads) is None]


def _spec():
    return {"kind": "state_dict", "config": golden.case("a_dit_tiny")["config"],
            "weights": str(golden.golden_dir() / "dit_tiny_weights.safetensors")}


@pytest.fixture(scope="module", params=WORLDS, ids=lambda w: f"{w}ranks")
def pool(request):
    dit = ParallelDiT(_spec(), tiny_config(), ["cpu"] * request.param, timeout=120, start_timeout=180)
    yield dit
    dit.close()


def _close(out, ref, what):
    golden.assert_close(out, ref, what=what)


@pytest.mark.parametrize("name", case_names())
def test_sequence_parallel_matches_one_process_and_golden(pool, name):
    inputs = case_inputs(name)
    with torch.no_grad():
        single = shared_tiny_model()(**inputs)
    out = pool(**inputs)
    _close(out, single, f"{name}: {len(pool.devices)} ranks vs one process")
    _close(out.reshape(-1), golden.tensors("dit_tiny_cases.safetensors")[f"{name}.out"].reshape(-1), f"{name}: {len(pool.devices)} ranks vs golden")


def test_guidance_rows_spread_over_groups(pool):
    """Several rows (guidance branches) in one call: rows split over groups, each group sequence-parallel."""
    names = case_names()
    one_speaker = [n for n in names if case_inputs(n)["audio"].shape[1] == 1]
    inputs = case_inputs(one_speaker[0])
    rows = 3
    x = torch.cat([inputs["x"], inputs["x"] * 0.5, inputs["x"].flip(-1)])
    audio = torch.cat([inputs["audio"], torch.zeros_like(inputs["audio"]), inputs["audio"] * 2])
    t = torch.tensor([float(inputs["t"].reshape(-1)[0])] * rows)
    batch = dict(inputs, x=x, audio=audio, t=t)
    with torch.no_grad():
        single = shared_tiny_model()(**batch)
    _close(pool(**batch), single, f"{rows} rows over {len(pool.devices)} ranks")


def test_layout_rules():
    assert slice_sizes(10, 4) == [3, 3, 2, 2] and sum(slice_sizes(32760, 8)) == 32760
    assert guidance_groups(2, 2) == 2 and guidance_groups(1, 4) == 1 and guidance_groups(3, 4) == 1
    assert guidance_groups(2, 8) == 2 and guidance_groups(3, 3) == 3
    assert group_rows(3, 2) == [[0, 1], [2]]
    assert check_world(8, 40) is None and check_world(2, 40) is None
    assert "do not divide" in check_world(3, 40) and "1, 2" in check_world(3, 40)


def test_dead_worker_fails_the_call_clearly():
    dit = ParallelDiT(_spec(), tiny_config(), ["cpu"] * WORLDS[0], timeout=60, start_timeout=180)
    try:
        dit._processes[-1].kill()
        dit._processes[-1].wait(10)
        with pytest.raises(WorkerError, match=r"worker \d .*exited with code"):
            dit(**case_inputs(case_names()[0]))
        with pytest.raises(WorkerError, match="shut down"):
            dit(**case_inputs(case_names()[0]))
    finally:
        dit.close()


def test_bad_world_size_is_refused():
    heads = tiny_config().num_heads
    with pytest.raises(ValueError, match="do not divide"):
        ParallelDiT(_spec(), tiny_config(), ["cpu"] * (heads + 1))


def test_loader_files_on_worker_processes(tmp_path):
    """load_parallel_dit: the host reads only headers, each worker loads the files through load_dit."""
    import loading_files as lf
    from infinitetalk_lipsync.pipeline.loading import load_dit
    from infinitetalk_lipsync.pipeline.parallel.pool import load_parallel_dit

    base, adapter = lf.write_float_pair(lf.reference(), tmp_path)
    heads = tiny_config().num_heads
    options = dict(compute_dtype=torch.float32, num_heads=heads)
    single, report = load_dit(base, adapter, device="cpu", **options)
    pool = load_parallel_dit(base, adapter, ["cpu"] * WORLDS[0], **options)
    try:
        assert pool.config == single.config
        assert pool.load_report.text() == report.text()
        inputs = case_inputs(case_names()[0])
        with torch.no_grad():
            _close(pool(**inputs), single(**inputs), "load_parallel_dit vs load_dit")
    finally:
        pool.close()


def test_cancel_while_waiting_then_next_call_is_clean(pool):
    """Cancel raises out of a forward; the workers' late answers to it never reach the next call."""
    inputs = case_inputs(case_names()[0])

    class Cancelled(Exception):
        pass

    def cancel():
        raise Cancelled()

    pool.interrupt = cancel
    try:
        with pytest.raises(Cancelled):
            pool(**inputs)
    finally:
        pool.interrupt = None
    with torch.no_grad():
        single = shared_tiny_model()(**inputs)
    _close(pool(**inputs), single, "the call after a cancelled one")


def test_gpus_setting_falls_back_with_a_reason():
    from infinitetalk_lipsync.pipeline.parallel.layout import choose_world
    assert choose_world("1", 8, 40) == (1, "")
    assert choose_world("auto", 8, 40) == (8, "") and choose_world("auto", 4, 40) == (4, "")
    count, note = choose_world("auto", 3, 40)
    assert count == 2 and "2 of 3" in note and "do not divide" in note
    count, note = choose_world("auto", 1, 40)
    assert count == 1 and "1 GPU visible" in note
    count, note = choose_world("3", 4, 40)
    assert count == 1 and "do not divide" in note and "one GPU" in note
    count, note = choose_world("8", 4, 40)
    assert count == 1 and "only 4 GPUs visible" in note
    assert choose_world("5", 8, 40) == (5, "")
