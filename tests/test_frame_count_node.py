"""InfiniteTalk Frame Count node (run without ComfyUI)."""
import pytest
import torch

from infinitetalk_lipsync.nodes.frame_count import COVER, FIT, InfiniteTalkFrameCount

NODE = InfiniteTalkFrameCount()


def run(duration=5.0, fps=25.0, window=81, motion_frames=9, policy=COVER, audio=None):
    out = NODE.count(duration, fps, window, motion_frames, policy, audio=audio)
    assert out["ui"]["text"] == [out["result"][3]]
    return out["result"]


@pytest.mark.parametrize("frames,windows", [(175, 3), (425, 6)])
def test_seed_cases_cover_audio(frames, windows):
    count, n_windows, seconds, plan = run(duration=frames / 25)
    assert (count, n_windows) == (frames, windows)
    assert seconds == pytest.approx(frames / 25)
    generated = 81 + (windows - 1) * 72
    assert f"{generated} frames generated, {generated - frames} trimmed" in plan
    assert "no zero padding" in plan
    assert plan.count("  window ") == windows


@pytest.mark.parametrize("frames,count,windows", [(175, 153, 2), (425, 369, 5), (153, 153, 2), (81, 81, 1)])
def test_fit_inside_audio(frames, count, windows):
    got, n_windows, seconds, plan = run(duration=frames / 25, policy=FIT)
    assert (got, n_windows) == (count, windows)
    assert ", 0 trimmed" in plan and f"{frames - count} frames of audio left over" in plan


@pytest.mark.parametrize("policy", [COVER, FIT])
def test_audio_shorter_than_one_window(policy):
    rate = 16000
    audio = {"waveform": torch.zeros(1, 2, rate * 2), "sample_rate": rate}  # 2 s = 50 frames
    count, n_windows, seconds, plan = run(duration=99.0, policy=policy, audio=audio)
    assert (count, n_windows, seconds) == (50, 1, 2.0)
    assert "81 frames generated, 31 trimmed" in plan


def test_audio_input_replaces_duration_and_other_fps():
    audio = {"waveform": torch.zeros(1, 1, 44100 * 7), "sample_rate": 44100}
    count, n_windows, seconds, _ = run(duration=1.0, fps=30.0, audio=audio)
    assert (count, n_windows, seconds) == (210, 3, 7.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(window=80), "4n\\+1"), (dict(motion_frames=8), "4k\\+1"), (dict(motion_frames=81), "smaller"),
    (dict(duration=0.0), "duration"), (dict(policy="both"), "policy"),
    (dict(audio={"waveform": torch.zeros(1, 1, 0), "sample_rate": 16000}), "empty audio"),
    (dict(audio="speech.wav"), "Load Audio"),
])
def test_bad_input_names_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run(**kwargs)


def test_one_window_limit_for_frame_count_and_sampler():
    from infinitetalk_lipsync.nodes.frame_count import InfiniteTalkFrameCount
    from infinitetalk_lipsync.nodes.sampler import InfiniteTalkSampler
    from infinitetalk_lipsync.pipeline.window_plan import MAX_MOTION, MAX_WINDOW, WindowPlanError, plan_windows

    for node in (InfiniteTalkFrameCount, InfiniteTalkSampler):
        inputs = {**node.INPUT_TYPES()["required"], **node.INPUT_TYPES().get("optional", {})}
        assert inputs["window"][1]["max"] == MAX_WINDOW and inputs["motion_frames"][1]["max"] == MAX_MOTION, node
    plan_windows([400], window=MAX_WINDOW, motion=MAX_MOTION)
    with pytest.raises(WindowPlanError, match=f"at most {MAX_WINDOW}"):
        plan_windows([400], window=MAX_WINDOW + 4)
    with pytest.raises(WindowPlanError, match=f"at most {MAX_MOTION}"):
        plan_windows([400], window=MAX_WINDOW, motion=MAX_MOTION + 4)
