"""The streaming window schedule of InfiniteTalk: which frames each window generates, which
audio rows it sees, which source-video frame it is anchored to, and what is trimmed.

Official schedule (``wan/multitalk.py`` ``generate_infinitetalk``): window ``F`` (4n+1, default
81), motion frames ``m`` (4k+1, default 9), stride ``F - m``. Window ``k`` covers output frames
``[k(F-m), k(F-m)+F)``; window 0 is kept whole, later windows drop their first ``m`` frames (they
re-generate the previous window's tail, which was fed back as motion latents). The window whose
end reaches the audio end is the last; before it, each speaker embedding that ends inside it is
extended by a time-reversed copy of its tail (``flip(E[-miss:])``, miss = end - L + 3). Window
entries read rows ``start + f + (-2..2)`` of the speaker embedding, clamped to its current length.

Where the official code fails or is wrong, this module extends/fixes it (the results are
identical wherever the official code succeeds, except fix 2):
1. Audio of at most one window (official: AssertionError) gives one window, mirrored
   padding before it, trimmed to the audio length.
2. The output is trimmed to ``num_frames`` (default: the LONGEST speaker), and the end of
   the schedule is decided on it too. The official code ends on speaker 1's length and
   trims to the last loaded speaker's length, which cuts a two-speaker video short when
   speaker 2 is shorter.
3. A mirrored tail longer than the embedding itself is continued back and forth
   (E, flip(E), E, ...); the official slice ``E[-miss:]`` silently stops at L rows and
   the clamp then repeats row 0. It only happens for a speaker much shorter than the video.
4. The reference frame is taken from the source video by timestamp, so sources at any
   frame rate stay in sync (the official code indexes frames as if the source were 25 fps).

``max_frames`` reproduces the official ``max_frames_num`` (clip mode is ``max_frames <= F``:
one window, whatever the audio length).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Audio rows around each frame that a window entry sees (official ``indices``).
AUDIO_CONTEXT = (-2, -1, 0, 1, 2)
# Rows the official mirrored tail adds past the last window's end (``miss = end - L + 3``).
_PAD_MARGIN = 3
# Tolerance for timestamps that land on a source frame boundary up to float error.
_TIME_EPS = 1e-6


# Largest window / motion the nodes offer and the planner accepts (twice the trained 81 frames; one
# 161-frame window at 480p already needs ~2x the attention memory of the trained size).
MAX_WINDOW = 161
MAX_MOTION = 33


class WindowPlanError(ValueError):
    """An invalid window/motion/fps/length setting (the message names the parameter and the fix)."""

    __module__ = "infinitetalk"  # ComfyUI shows "infinitetalk.WindowPlanError", not the install path


@dataclass(frozen=True)
class Window:
    """One generated window. Frame numbers are output frames at the plan's fps (= audio rows).

    start/end: frames ``[start, end)`` this window generates (end - start = window size).
    motion_frames: frames fed in as motion latents: 1 (the reference image) for window 0, else m.
    keep_start/keep_stop: window-local frames ``[keep_start, keep_stop)`` that go to the output,
        after the final trim (keep_stop == keep_start: the window is computed but adds nothing).
    ref_time_s: time of the window's first frame; ref_frame: the source-video frame shown then.
    """

    index: int
    start: int
    end: int
    motion_frames: int
    keep_start: int
    keep_stop: int
    ref_time_s: float
    ref_frame: int

    @property
    def output_start(self) -> int:
        """Output frame of this window's first kept frame."""
        return self.start + self.keep_start

    @property
    def kept(self) -> int:
        return self.keep_stop - self.keep_start


@dataclass(frozen=True)
class WindowPlan:
    """The full schedule. ``windows`` are the windows to generate, in order.

    audio_lengths: rows of each speaker embedding as given; padded_lengths: rows after the
    end-of-audio mirroring (``pad_embedding``). end_window: index of the window whose end reaches
    the audio end; the mirrored rows are visible from that window on (in clip mode it may lie
    past the last generated window). num_frames: output length after the trim.
    """

    window: int
    motion: int
    fps: float
    audio_lengths: tuple[int, ...]
    padded_lengths: tuple[int, ...]
    num_frames: int
    end_window: int
    windows: tuple[Window, ...]

    @property
    def stride(self) -> int:
        return self.window - self.motion

    @property
    def frames_generated(self) -> int:
        """Frames the windows add before the trim (window 0 whole, then stride per window)."""
        return self.window + (len(self.windows) - 1) * self.stride

    @property
    def frames_trimmed(self) -> int:
        return self.frames_generated - self.num_frames

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def audio_indices(self, window_index: int, speaker: int) -> torch.Tensor:
        """[F, 5] int64 rows of speaker ``speaker``'s PADDED embedding fed to window ``window_index``."""
        window = self.windows[window_index]
        length = self.padded_lengths[speaker] if window.index >= self.end_window else self.audio_lengths[speaker]
        return window_audio_indices(window.start, self.window, length)

    def window_audio(self, window_index: int, embeddings: list[torch.Tensor]) -> torch.Tensor:
        """Gather the model's audio input for a window.

        embeddings: per speaker [padded_length, ...] (from ``pad_embedding``) or the embedding as given
        [audio_length, ...]: its mirrored rows are then looked up in place (no padded copy of a long
        video's embedding is ever made). Returns [n_speakers, F, 5, ...] in their dtype/device."""
        rows = []
        for speaker, emb in enumerate(embeddings):
            length, padded = self.audio_lengths[speaker], self.padded_lengths[speaker]
            index = self.audio_indices(window_index, speaker)
            if emb.shape[0] == length != padded:
                index = padded_source_index(length, padded)[index]
            elif emb.shape[0] != padded:
                raise WindowPlanError(f"speaker {speaker + 1}: embedding has {emb.shape[0]} rows, the plan expects "
                                      f"{length} (as given) or {padded} (padded with pad_embedding).")
            rows.append(emb[index.to(emb.device)])
        return torch.stack(rows)

    def output_tags(self) -> torch.Tensor:
        """[num_frames, 2] int64 (window index, frame within that window) of every output frame."""
        tags = [(w.index, f) for w in self.windows for f in range(w.keep_start, w.keep_stop)]
        return torch.tensor(tags, dtype=torch.int64).reshape(-1, 2)

    def summary(self) -> str:
        """Human-readable plan (shown on the frame-count node)."""
        lines = [f"{self.num_frames} frames = {self.duration_s:.2f} s at {self.fps:g} fps; "
                 f"window {self.window}, motion {self.motion}, stride {self.stride}",
                 f"{len(self.windows)} window{'s' * (len(self.windows) != 1)}: {self.frames_generated} frames generated, "
                 f"{self.frames_trimmed} trimmed at the end"]
        for w in self.windows:
            kept = (f"output {w.output_start}-{w.output_start + w.kept - 1}" if w.kept
                    else "adds no output frame")
            lines.append(f"  window {w.index + 1}: frames {w.start}-{w.end - 1} "
                         f"({w.ref_time_s:.2f}-{w.end / self.fps:.2f} s) -> {kept}; "
                         f"reference frame {w.ref_frame}")
        padded = [p - a for p, a in zip(self.padded_lengths, self.audio_lengths)]
        if any(padded) and self.end_window < len(self.windows):
            who = ", ".join(f"speaker {s + 1}: {n}" for s, n in enumerate(padded) if n)
            lines.append(f"audio end mirrored for the last window ({who} rows), no zero padding")
        return "\n".join(lines)


def _is_count(value, minimum: int = 1) -> bool:
    """An int (not a bool) >= minimum."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_fps(fps) -> None:
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise WindowPlanError(f"fps={fps!r}: the frame rate must be a positive number (25 is the trained rate).")


def validate_settings(window: int, motion: int, fps: float) -> None:
    """Raise WindowPlanError for a window/motion/fps the model cannot use."""
    if not _is_count(window, 5) or (window - 1) % 4:
        raise WindowPlanError(f"window={window!r}: the window must be 4n+1 frames (5, 9, ..., 81, ...): "
                              f"the VAE packs 4 frames per latent after the first. 81 is the trained size.")
    if window > MAX_WINDOW:
        raise WindowPlanError(f"window={window}: at most {MAX_WINDOW} frames per window (81 is the trained size); "
                              f"longer audio is covered by more windows, not longer ones.")
    if not _is_count(motion) or (motion - 1) % 4:
        raise WindowPlanError(f"motion frames={motion!r}: must be 4k+1 (1, 5, 9, ...) so they encode to "
                              f"whole latents. 9 is the official value.")
    if motion >= window:
        raise WindowPlanError(f"motion frames={motion} must be smaller than window={window}: "
                              f"each window must add new frames.")
    if motion > MAX_MOTION:
        raise WindowPlanError(f"motion frames={motion}: at most {MAX_MOTION} (9 is the official value).")
    _check_fps(fps)


def frames_for_duration(duration_s: float, fps: float) -> int:
    """Output frames that cover ``duration_s`` seconds: round(duration_s * fps)."""
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise WindowPlanError(f"duration={duration_s!r} s: the audio must be longer than 0 s.")
    _check_fps(fps)
    frames = round(duration_s * fps)
    if frames < 1:
        raise WindowPlanError(f"duration={duration_s} s is shorter than one frame at {fps:g} fps.")
    return frames


SOURCE_END = ("hold", "pingpong")


def source_frame_index(frame: int, fps: float, source_fps: float, source_frames: int | None = None,
                       end: str = "hold") -> int:
    """Source-video frame on screen at output frame ``frame`` (time frame/fps): THE rule every window
    report, IMAGE source and streamed video source asks.

    Frame ``i`` of the source is shown during ``[i/source_fps, (i+1)/source_fps)``, so the index is
    floor(time * source_fps) (a timestamp within 1e-6 frame of a boundary counts as the later
    frame, absorbing float error). Past the end of a source of ``source_frames`` frames: ``end``
    'hold' keeps the last frame (the official decord lookup), 'pingpong' plays it backwards and
    forwards again (..., n-2, n-1, n-2, ..., 1, 0, 1, ...). A still image is a 1-frame source
    (always frame 0); ``source_frames`` None = unknown length (no end rule).
    """
    if not math.isfinite(source_fps) or source_fps <= 0:
        raise WindowPlanError(f"source fps={source_fps!r}: the source video frame rate must be positive.")
    if end not in SOURCE_END:
        raise WindowPlanError(f"source_end={end!r}: must be one of {SOURCE_END}.")
    index = math.floor(frame * source_fps / fps + _TIME_EPS)
    if source_frames is None:
        return index
    if source_frames < 1:
        raise WindowPlanError(f"source frames={source_frames}: the source video has no frames.")
    n = source_frames
    if index < n:
        return index
    if end == "hold" or n == 1:
        return n - 1
    phase = index % (2 * n - 2)
    return phase if phase < n else 2 * n - 2 - phase


def window_audio_indices(start: int, window: int, length: int) -> torch.Tensor:
    """[window, 5] int64 embedding rows ``start + f + (-2..2)`` clamped to ``[0, length)``."""
    frames = torch.arange(start, start + window, dtype=torch.int64)[:, None]
    return (frames + torch.tensor(AUDIO_CONTEXT, dtype=torch.int64)).clamp_(0, length - 1)


def padded_source_index(length: int, padded_length: int) -> torch.Tensor:
    """[padded_length] int64: the original row behind every row of a mirrored-padded embedding.

    Rows past the end run back and forth over the embedding with the turning row repeated
    (..., L-2, L-1, L-1, L-2, ..., 1, 0, 0, 1, ...), which is the official ``flip(E[-miss:])``
    for miss <= L and continues it beyond."""
    if length < 1 or padded_length < length:
        raise WindowPlanError(f"cannot pad an embedding of {length} rows to {padded_length} rows.")
    phase = torch.arange(padded_length, dtype=torch.int64) % (2 * length)
    return torch.where(phase < length, phase, 2 * length - 1 - phase)


def pad_embedding(embedding: torch.Tensor, padded_length: int) -> torch.Tensor:
    """Mirror-pad ``embedding`` [L, ...] along time to [padded_length, ...] (see padded_source_index)."""
    if padded_length == embedding.shape[0]:
        return embedding
    return embedding[padded_source_index(embedding.shape[0], padded_length).to(embedding.device)]


def plan_windows(audio_lengths, *, window: int = 81, motion: int = 9, fps: float = 25.0,
                 num_frames: int | None = None, max_frames: int | None = None,
                 source_fps: float | None = None, source_frames: int | None = None,
                 source_end: str = "hold") -> WindowPlan:
    """Plan the streaming windows for speaker embeddings of ``audio_lengths`` rows (1 row per frame).

    num_frames: output length (default: the longest speaker); e.g. AudioEmbeds.num_frames.
    max_frames: official ``max_frames_num`` cap (None: no cap; <= window: official clip mode).
    source_fps/source_frames: the source video for reference frames (default: same fps as
        the output, unknown length; a still image is source_frames=1); source_end: 'hold' or
        'pingpong' past its end (``source_frame_index``).
    """
    validate_settings(window, motion, fps)
    lengths = tuple(audio_lengths)
    if not lengths or not all(_is_count(n) for n in lengths):
        raise WindowPlanError(f"audio lengths {lengths!r}: every speaker needs at least one embedding row "
                              f"(check that the audio is not empty).")
    total = max(lengths) if num_frames is None else num_frames
    if not _is_count(total):
        raise WindowPlanError(f"num_frames={num_frames!r}: the output needs at least one frame.")
    if max_frames is not None and not _is_count(max_frames):
        raise WindowPlanError(f"max_frames={max_frames!r}: must be a positive frame count or None.")
    stride = window - motion
    target = total if max_frames is None else min(total, max_frames)
    # The official loop checks the end only after window 0, so audio longer than one window
    # always gets >= 2 windows; shorter audio (official: error) gets one.
    end_window = 0 if total <= window else max(1, -(-(target - window) // stride))
    clip_mode = max_frames is not None and max_frames <= window
    count = 1 if clip_mode else end_window + 1
    end = end_window * stride + window
    padded = tuple(end + _PAD_MARGIN if end >= n else n for n in lengths)
    out_len = min(window + (count - 1) * stride, target)
    source_fps = fps if source_fps is None else source_fps

    windows = []
    for k in range(count):
        start = k * stride
        keep_start = 0 if k == 0 else motion
        keep_stop = max(keep_start, min(window, out_len - start))
        windows.append(Window(index=k, start=start, end=start + window, motion_frames=1 if k == 0 else motion,
                              keep_start=keep_start, keep_stop=keep_stop, ref_time_s=start / fps,
                              ref_frame=source_frame_index(start, fps, source_fps, source_frames,
                                                                   source_end)))
    return WindowPlan(window=window, motion=motion, fps=float(fps), audio_lengths=lengths, padded_lengths=padded,
                      num_frames=out_len, end_window=end_window, windows=tuple(windows))
