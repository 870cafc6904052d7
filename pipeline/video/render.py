"""A whole render streamed to a video file: windows from the sampler loop go straight to H.264 segments
on disk, checkpointed for resume, then joined with the audio into one mp4. Host memory holds one window
(plus the optional IMAGE output the caller asks for), whatever the video's length.

Resume: with ``resume`` on, a render whose checkpoint folder (``sampler/resume.Checkpoints``) holds
finished windows continues at the first unfinished one; the file equals an uninterrupted render's.
Writing overlaps computing: a window's H.264 segment and its checkpoint are written on a worker thread
while the sampler computes the next window (x264 and PyAV release the GIL), so the GPU does not wait for
the CPU's encode; at most two windows are in memory. A stop (Cancel, an error) first finishes writing the
window already computed, so it is kept for resume.
Continue: ``start``/``state`` begin at a later window with the motion frames of a previous video (the
caller builds them with ``continue_state``), exactly as that window of one long render would.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import torch

from ..resolution import resize_and_crop
from ..sampler.loop import Callbacks, Job, Prepared, prepare, sample
from ..sampler.resume import Checkpoints
from ..window_plan import WindowPlan
from .audio_track import trim_to_frames
from .writer import DEFAULT_CRF, assemble, encode_segment


@dataclass
class Rendered:
    """path: the mp4; frames: [n,H,W,3] float32 (None unless asked for); audio: AUDIO dict of the same span;
    fps; first_frame: the output frame the file starts at (0, or where a continued render starts);
    resumed_at: the window the render (re)started at; seconds_per_window: wall time of each computed window;
    cleanup: what the caller's clean-up of abandoned checkpoints removed before it (one line, '' for nothing)."""

    path: str
    frames: torch.Tensor | None
    audio: dict
    fps: float
    first_frame: int
    resumed_at: int
    seconds_per_window: list[float]
    cleanup: str = ""


def continue_state(plan: WindowPlan, previous_frames: int, last: torch.Tensor, th: int, tw: int) -> tuple[int, dict]:
    """(window to start at, its state) to continue a render whose first ``previous_frames`` output frames
    exist; last: [>=m,H,W,3] float 0..1, the previous video's last frames (any size: cover-resized to the
    output). The previous video must end where a window of this plan ends (as a render with the same
    window/motion settings does), so the next window's motion frames are exactly its last m frames."""
    m, stride = plan.motion, plan.stride
    k, rest = divmod(previous_frames - m, stride)
    ends = [w.end for w in plan.windows[:-1]]
    if previous_frames <= m or rest or k >= len(plan.windows):
        raise ValueError(f"continue_video: it has {previous_frames} frames; a render continues from the end of a "
                         f"window ({', '.join(map(str, ends[:6]))}{', ...' if len(ends) > 6 else ''} frames with "
                         f"window {plan.window}, motion {m}) and before the end of the audio ({plan.num_frames} "
                         f"frames). Use the same window/motion_frames as the previous render and the whole audio "
                         f"from the start of the previous video.")
    if last.shape[0] < m:
        raise ValueError(f"continue_video: needs its last {m} frames, got {last.shape[0]}.")
    motion = last[-m:].float()
    if tuple(motion.shape[1:3]) != (th, tw):
        motion = resize_and_crop(motion, th, tw)
    return k, {"motion_frames": motion}


def render(model, codec, clip_encoder, job: Job, path: str, checkpoints: Checkpoints, *, crf: int = DEFAULT_CRF,
           resume: bool = True, keep_frames: bool = False, device="cpu", callbacks: Callbacks | None = None,
           start: int = 0, state: dict | None = None, prepared: Prepared | None = None,
           on_window: Callable[[int, int, float], None] = lambda index, total, seconds: None,
           paste=None) -> Rendered:
    """Render ``job`` into the mp4 ``path``; see the module docstring. on_window(index, windows, seconds)
    after each computed window (progress text / ETA). prepared: ``prepare(job)`` if the caller has it.
    paste: a ``mask.face_stream.FacePaster`` (face-only dubbing): each window's generated crops are pasted
    into the full-resolution source frames, which the file (and ``frames``) hold; its state is checkpointed."""
    prepared = prepared or prepare(job)
    plan = prepared.plan
    fps = float(job.audio.fps)
    first = plan.windows[start].output_start
    resumed_at, saved = checkpoints.load() if resume else (0, None)
    if saved is None or resumed_at < start:
        resumed_at, saved = start, state
        checkpoints.start()
    if paste is not None:
        paste.restore(saved)
    segments = [w.index for w in plan.windows[:resumed_at] if w.index >= start and w.kept]
    num_frames = plan.num_frames - first
    height, width = (job.source.th, job.source.tw) if paste is None else paste.size
    frames = torch.empty(num_frames, height, width, 3) if keep_frames else None
    if frames is not None and segments:  # windows rendered before an interruption: read back from their files
        _read_segments(frames, [checkpoints.segment(k) for k in segments], height, width)
    timings = []
    clock = time.perf_counter()
    writer = _Writer()
    try:
        for result in (sample(model, codec, clip_encoder, job, device, callbacks, prepared=prepared, start=resumed_at,
                              state=saved) if resumed_at < len(plan.windows) else ()):
            window = plan.windows[result.index]
            if window.kept:
                segments = segments + [window.index]  # a new list: the worker commits the one it was given

            def write(window=window, result=result, segments=segments):
                if window.kept:
                    out = result.frames if paste is None else paste.frames(window.output_start, result.frames)
                    if frames is not None:
                        out = _kept(out, frames, window.output_start - first)
                    encode_segment(checkpoints.segment(window.index), out, fps, crf)
                checkpoints.commit(window.index + 1, segments,
                                   result.state if paste is None else {**result.state, **paste.state()})

            writer.submit(write)
            if paste is not None:
                writer.wait()  # the paste reads the source video, which the sampler's next window reads too
            now = time.perf_counter()
            timings.append(now - clock)
            clock = now
            on_window(window.index, len(plan.windows), timings[-1])
    finally:
        writer.close()
    waveform, rate = trim_to_frames(job.audio, fps, num_frames, first)
    assemble(path, [checkpoints.segment(k) for k in segments], fps, num_frames, (waveform, rate))
    checkpoints.remove()
    return Rendered(path=path, frames=frames, audio={"waveform": waveform[None], "sample_rate": rate}, fps=fps,
                    first_frame=first, resumed_at=resumed_at, seconds_per_window=timings)


class _Writer:
    """One worker thread running each window's write in order; at most one write pending. A write runs in
    the submitting thread's inference/grad mode (thread-local in torch): tensors made under inference mode
    may only be changed in place under it."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infinitetalk-write")
        self._pending = None

    def submit(self, write: Callable[[], None]) -> None:
        self.wait()
        inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

        def run():
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                write()
        self._pending = self._pool.submit(run)

    def wait(self) -> None:
        """Until the pending write is done; its error is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def _kept(frames, into: torch.Tensor, at: int):
    """Yield ``frames`` (a tensor or an iterable of frames) while storing each at ``into[at + k]``."""
    for k, frame in enumerate(frames):
        into[at + k] = frame
        yield frame


def _read_segments(frames: torch.Tensor, paths: list[str], th: int, tw: int) -> None:
    """Decode finished segments into the start of ``frames`` (their H.264 frames, not the lossless ones)."""
    from .reader import VideoFile
    at = 0
    for path in paths:
        video = VideoFile(path)
        try:
            for i in range(video.num_frames):
                frames[at] = torch.from_numpy(video.frame(i)) / 255.0
                at += 1
        finally:
            video.close()
