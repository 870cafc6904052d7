"""Window planner: every golden window-plan table of the official loop, plus our extensions."""
import pytest
import torch

from golden import case, shared_dir, tensors

from infinitetalk_lipsync.pipeline.window_plan import (
    WindowPlanError, frames_for_duration, pad_embedding, padded_source_index, plan_windows,
    source_frame_index, window_audio_indices)

FILE = "window_plan.safetensors"


def _plans():
    """The golden plans, or [] without shared/ (test_manifest_has_plans then skips, or fails under CI)."""
    return case("f_window_plan") if shared_dir() is not None else []


def _plan_for(entry):
    return plan_windows(entry["audio_lens"], window=entry["frame_num"], motion=entry["motion_frame"],
                        max_frames=entry["max_frames_num"])


def _ok(entry):
    return entry["status"] == "ok"


def test_manifest_has_plans():
    plans = case("f_window_plan")
    assert sum(_ok(e) for e in plans) >= 10, [e["name"] for e in plans]
    assert any(len(e["audio_lens"]) == 2 for e in plans)


@pytest.mark.parametrize("entry", [e for e in _plans() if _ok(e)], ids=lambda e: e["name"])
def test_official_plan_tables(entry):
    name, lens = entry["name"], entry["audio_lens"]
    ref = {k[len(name) + 1:]: v for k, v in tensors(FILE).items() if k.startswith(name + ".")}
    plan = _plan_for(entry)
    # Deliberate difference: the official loop runs until SPEAKER 1's end and trims to the LAST speaker's
    # length; ours runs until the LONGEST speaker's end and keeps it (test_trim_rule_ours_and_official).
    # Where speaker 1 is the longest both loops schedule the same windows; otherwise the official
    # windows are a prefix of ours.
    same_loop = lens[0] == max(lens)
    clips = entry["clips"]
    assert len(plan.windows) == len(clips) if same_loop else len(plan.windows) >= len(clips)
    for w, clip in zip(plan.windows, clips):
        assert (w.index, w.start, w.end) == (clip["clip"], clip["audio_start_idx"], clip["audio_end_idx"])
        assert w.ref_frame == clip["ref_frame_index"]
        assert w.motion_frames == clip["cur_motion_frames_num"]
        # the official output keeps the same frames of each window, up to its own (shorter or equal) length
        official_stop = max(w.keep_start, min(plan.window, entry["output_len"] - w.start))
        assert [w.keep_start, official_stop] == clip["appended_frames_in_output"]
        assert official_stop - w.keep_start == clip["n_appended_in_output"]
        assert w.keep_stop == max(w.keep_start, min(plan.window, plan.num_frames - w.start))
    if not same_loop:
        return
    # reference frames requested: every scheduled window up to the one reaching the end
    # (clip mode requests the next one before stopping)
    requests = entry["reference_frame_requests"]
    assert requests == [k * plan.stride for k in range(plan.end_window + 1)]

    # end-of-audio mirroring
    assert list(plan.padded_lengths) == entry["padded_audio_len"]
    assert [p - n for p, n in zip(plan.padded_lengths, lens)] == entry["miss_lengths"]
    sources = [padded_source_index(n, p) for n, p in zip(lens, plan.padded_lengths)]
    for h, src in enumerate(sources):
        assert torch.equal(src, ref[f"padded_audio_idx.h{h}"].long()), f"speaker {h}"

    # window entries as source rows [clips, humans, F, 5]
    idx = torch.stack([torch.stack([sources[h][plan.audio_indices(k, h)] for h in range(len(lens))])
                       for k in range(len(plan.windows))])
    assert torch.equal(idx, ref["audio_idx"].long())

    # output provenance
    tags = plan.output_tags()
    n = min(entry["output_len"], plan.num_frames)
    assert torch.equal(tags[:n], ref["output_tags"].long()[:n])
    audio_index = torch.tensor([plan.windows[k].start + f for k, f in tags.tolist()])
    assert torch.equal(audio_index[:n], ref["output_audio_index"].long()[:n])
    assert torch.equal(audio_index, torch.arange(plan.num_frames))


def _official_output_len(entry) -> int:
    """The official trim: its windows' frames cut to max_frames, then (only if some speaker was
    mirror-padded, and not in clip mode) to the LAST speaker's unpadded length, whichever speaker is longer."""
    F, M, cap = entry["frame_num"], entry["motion_frame"], entry["max_frames_num"]
    out = min(F + (len(entry["clips"]) - 1) * (F - M), cap)
    return min(out, entry["audio_lens"][-1]) if cap > F and any(entry["miss_lengths"]) else out


@pytest.mark.parametrize("entry", [e for e in _plans() if _ok(e)], ids=lambda e: e["name"])
def test_trim_rule_ours_and_official(entry):
    """Deliberate difference: the official output follows the last speaker's length; ours keeps the longest
    speaker (capped by max_frames). The rule holds for any lengths, including the last speaker being the longer
    (the official loop then stops at speaker 1's end and loses the last speaker's tail; ours does not)."""
    plan = _plan_for(entry)
    lens = entry["audio_lens"]
    assert entry["output_len"] == _official_output_len(entry)
    assert plan.num_frames == min(max(lens), entry["max_frames_num"], plan.frames_generated)
    assert plan.frames_trimmed == plan.frames_generated - plan.num_frames
    if lens[0] == lens[-1] == max(lens):
        assert plan.num_frames == entry["output_len"]
    elif lens[-1] == max(lens):  # official windows stop at speaker 1's end: the longer last speaker is cut short
        assert entry["output_len"] <= plan.num_frames


def test_manifest_has_unequal_speakers():
    assert any(_ok(e) and len(set(e["audio_lens"])) > 1 for e in case("f_window_plan"))


@pytest.mark.parametrize("entry", [e for e in _plans() if not _ok(e)], ids=lambda e: e["name"])
def test_short_audio_one_window(entry):
    """Where the official code asserts (audio <= one window) we plan one window and trim."""
    (length,) = entry["audio_lens"]
    plan = _plan_for(entry)
    F = entry["frame_num"]
    assert len(plan.windows) == 1 and plan.end_window == 0
    assert plan.num_frames == length and plan.frames_generated == F and plan.frames_trimmed == F - length
    w = plan.windows[0]
    assert (w.start, w.end, w.keep_start, w.keep_stop, w.ref_frame) == (0, F, 0, length, 0)
    assert plan.padded_lengths == (F + 3,)  # official margin: miss = end - len + 3
    src = padded_source_index(length, F + 3)[plan.audio_indices(0, 0)]
    # the tail mirrors (never clamps to a frozen last row) and never leaves the audio
    assert src.min() >= 0 and src.max() == length - 1
    assert torch.equal(src[:, 2][:length], torch.arange(length))


def test_mirror_padding_repeats_for_very_short_audio():
    src = padded_source_index(3, 14)
    assert src.tolist() == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1]
    plan = plan_windows([3], window=9, motion=5)
    assert plan.num_frames == 3 and plan.padded_lengths == (12,)
    emb = torch.arange(3.0)[:, None].expand(3, 4)
    padded = pad_embedding(emb, plan.padded_lengths[0])
    audio = plan.window_audio(0, [padded])
    assert audio.shape == (1, 9, 5, 4)
    assert torch.equal(audio[0, :, 2, 0], torch.tensor([0., 1, 2, 2, 1, 0, 0, 1, 2]))


def test_pad_embedding_matches_official_flip():
    emb = torch.randn(20, 3, 4)
    miss = 7
    official = torch.cat([emb, torch.flip(emb[-miss:], dims=[0])])
    assert torch.equal(pad_embedding(emb, 20 + miss), official)
    assert pad_embedding(emb, 20) is emb


def test_window_audio_indices_clamp():
    idx = window_audio_indices(0, 5, 100)
    assert idx.shape == (5, 5) and idx.dtype == torch.int64
    assert idx[0].tolist() == [0, 0, 0, 1, 2] and idx[4].tolist() == [2, 3, 4, 5, 6]
    assert window_audio_indices(10, 5, 12)[-1].tolist() == [11, 11, 11, 11, 11]


def test_window_audio_mirrors_an_unpadded_embedding_in_place_and_rejects_other_lengths():
    plan = plan_windows([100])
    emb = torch.randn(100, 2)
    for k in range(len(plan.windows)):  # the same rows as from the padded copy, which a long video never makes
        assert torch.equal(plan.window_audio(k, [emb]), plan.window_audio(k, [pad_embedding(emb, plan.padded_lengths[0])]))
    with pytest.raises(WindowPlanError, match="pad_embedding"):
        plan.window_audio(0, [torch.zeros(99, 2)])


@pytest.mark.parametrize("frames,windows,generated", [(175, 3, 225), (425, 6, 441), (153, 2, 153), (50, 1, 81)])
def test_cover_plans(frames, windows, generated):
    plan = plan_windows([frames])
    assert len(plan.windows) == windows and plan.frames_generated == generated
    assert plan.num_frames == frames and plan.frames_trimmed == generated - frames
    assert plan.windows[-1].keep_stop > plan.windows[-1].keep_start  # the last window adds frames
    assert plan.output_tags().shape == (frames, 2)
    assert plan.padded_lengths[0] == generated + 3
    assert "no zero padding" in plan.summary()


def test_num_frames_rounding_past_embedding():
    """AudioEmbeds: rows = int(d*fps), num_frames = round(d*fps) may be one more."""
    plan = plan_windows([174], num_frames=175)
    assert plan.num_frames == 175 and plan.padded_lengths == (228,)
    src = padded_source_index(174, 228)[plan.audio_indices(2, 0)]
    assert src.max() == 173


def test_reference_frame_by_timestamp():
    assert source_frame_index(72, 25, 25) == 72
    assert source_frame_index(72, 25, 30) == 86          # 2.88 s * 30 = 86.4
    assert source_frame_index(72, 25, 50) == 144
    assert source_frame_index(75, 25, 30000 / 1001) == 89  # 3.0 s * 29.97 = 89.9
    assert source_frame_index(25, 25, 24) == 24           # exactly 1 s: boundary counts as the next frame
    assert source_frame_index(720, 25, 25, source_frames=100) == 99
    assert source_frame_index(144, 25, 25, source_frames=1) == 0
    plan = plan_windows([300], source_fps=30.0)
    assert [w.ref_frame for w in plan.windows] == [0, 86, 172, 259, 345]
    assert [round(w.ref_time_s, 2) for w in plan.windows] == [0.0, 2.88, 5.76, 8.64, 11.52]


def test_frames_for_duration():
    assert frames_for_duration(7.0, 25) == 175
    assert frames_for_duration(10.7, 25) == 268
    assert frames_for_duration(0.03, 25) == 1
    with pytest.raises(WindowPlanError, match="duration"):
        frames_for_duration(0.0, 25)
    with pytest.raises(WindowPlanError, match="shorter than one frame"):
        frames_for_duration(0.001, 25)


@pytest.mark.parametrize("kwargs,match", [
    (dict(window=80), "4n\\+1"), (dict(window=1), "4n\\+1"), (dict(window=81.0), "4n\\+1"),
    (dict(motion=8), "4k\\+1"), (dict(motion=0), "4k\\+1"),
    (dict(motion=81), "smaller than window"), (dict(window=9, motion=13), "smaller than window"),
    (dict(fps=0), "fps"), (dict(fps=-25), "fps"), (dict(fps=float("nan")), "fps"),
    (dict(num_frames=0), "num_frames"), (dict(max_frames=0), "max_frames"),
    (dict(source_fps=0), "source fps"), (dict(source_frames=0), "source frames"),
])
def test_invalid_settings(kwargs, match):
    with pytest.raises(WindowPlanError, match=match):
        plan_windows([200], **kwargs)


@pytest.mark.parametrize("lengths", [[], [0], [100, -1], [12.5]])
def test_invalid_lengths(lengths):
    with pytest.raises(WindowPlanError, match="audio lengths"):
        plan_windows(lengths)


def test_windows_tile_the_output():
    for frames in range(1, 400, 7):
        plan = plan_windows([frames], window=17, motion=5)
        tags = plan.output_tags()
        assert tags.shape[0] == frames
        assert sum(w.kept for w in plan.windows) == frames
        assert all(w.kept > 0 for w in plan.windows)
