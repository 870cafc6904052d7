"""The sampler node's video plumbing: the source as IMAGE frames or a streamed VIDEO file, the render streamed
to an mp4 (returned as core VIDEO) with resume and continue, the frames output only when something uses it,
and the progress text with an ETA. Host objects (VIDEO) are unwrapped through ``host``."""
from __future__ import annotations

import os

import torch

from ..pipeline.sampler.checkpoint_cleanup import prune_and_report
from ..pipeline.sampler.loop import Job, Prepared
from ..pipeline.sampler.resume import Checkpoints, render_key
from ..pipeline.sampler.source import Source
from ..pipeline.mask.face_stream import FaceCropSource
from ..pipeline.video.reader import VideoFile, VideoSource
from ..pipeline.video.render import continue_state, render
from . import host
from .managed_model import ensure_loaded


def open_source(source, source_video, source_fps: float):
    """(frames [N,H,W,3] or None, VideoFile or None, fps) from exactly one of the IMAGE and VIDEO inputs."""
    if (source is None) == (source_video is None):
        raise ValueError("source / source_video: connect exactly one: source_video (a VIDEO from Load Video, "
                         "streamed window by window: any length) or source (IMAGE: one image or a short clip).")
    if source is not None:
        if source.dim() != 4 or source.shape[0] < 1:
            raise ValueError(f"source: expected IMAGE frames [N,H,W,3], got {tuple(source.shape)}.")
        return source[..., :3], None, float(source_fps)
    kind, value = host.video_source(source_video, "source_video")
    if kind == "frames":
        return value[0][..., :3], None, value[1]
    video = VideoFile(*value)
    return None, video, float(video.fps)


def make_source(frames, video, source_fps, fps, th, tw, end, face_plan=None):
    """The loop's source: the IMAGE frames, the streamed video, or the streamed video's face crops."""
    if face_plan is not None:
        if video is None:
            raise ValueError("face_plan: connect the video the plan was made on to source_video (a core Load Video, "
                             "read window by window), not source; for IMAGE frames use Face Crop -> sampler -> "
                             "Face Paste.")
        return FaceCropSource(video, face_plan, fps, th, tw, end)
    if video is not None:
        return VideoSource(video, fps, th, tw, end)
    return Source(frames, source_fps, fps, th, tw, end)


def source_size(frames, video, face_plan=None) -> tuple[int, int]:
    """(H, W) of what the sampler generates from: the frames, or the face crop of a face plan."""
    if face_plan is not None:
        return tuple(face_plan.crop.target_size)
    return (int(frames.shape[1]), int(frames.shape[2])) if video is None else (video.height, video.width)


def face_note(face_plan) -> str:
    """The report's words for a face-only render ('' without a face plan)."""
    if face_plan is None:
        return ""
    (h, w), (sh, sw) = face_plan.crop.target_size, face_plan.crop.source_size
    return f", face-only: the {w}x{h} face crop pasted back into the {sw}x{sh} frames"


def wants_frames(prompt, unique_id) -> bool:
    """Whether any node of the queued prompt reads this node's IMAGE output (index 0). Outside a prompt
    (tests, scripts) the frames are returned."""
    if not isinstance(prompt, dict) or unique_id is None:
        return True
    for node in prompt.values():
        for value in (node.get("inputs") or {}).values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == str(unique_id) and value[1] == 0:
                return True
    return False


def continue_from(continue_video, job: Job, prepared: Prepared):
    """(start window, state) to continue the render of ``continue_video`` (see ``render.continue_state``)."""
    if continue_video is None:
        return 0, None
    plan = prepared.plan
    kind, value = host.video_source(continue_video, "continue_video")
    if kind == "frames":
        frames = value[0][..., :3]
        return continue_state(plan, frames.shape[0], frames[-plan.motion:], job.source.th, job.source.tw)
    video = VideoFile(*value)
    try:
        n = video.num_frames
        last = torch.stack([video.image(i) for i in range(max(0, n - plan.motion), n)])
    finally:
        video.close()
    return continue_state(plan, n, last, job.source.th, job.source.tw)


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def stream_render(dit, codec, clip_encoder, job: Job, prepared: Prepared, *, key_parts: dict, crf: int, resume: bool,
                  keep_frames: bool, continue_video, device, callbacks, node_id, info: str):
    """Render the prepared job to an mp4 in the host's video folder; returns (Rendered, VIDEO). A face-plan
    source (``FaceCropSource``) is pasted into the full-resolution frames window by window."""
    paste = job.source.paster() if isinstance(job.source, FaceCropSource) else None
    if paste is not None and continue_video is not None:
        raise ValueError("continue_video does not work with face_plan: the next window's motion frames are the "
                         "generated face crops, which the previous video no longer holds (it was pasted). Render "
                         "the whole audio in one go (resume stays on, so a cancelled or crashed render resumes "
                         "where it stopped), or disconnect face_plan to continue a full-frame render.")
    patcher = None if paste is None else getattr(paste.plan.sam2, "patcher", None)
    if patcher is not None:  # before each window's SAM2 pass: the memory manager puts it (back) on the GPU
        paste.before_segment = lambda: ensure_loaded(patcher)
    start, state = continue_from(continue_video, job, prepared)
    key = render_key(job=job, crf=crf, start=start, continued=state, **key_parts)
    videos, checkpoints = host.render_folders()
    cleaned = prune_and_report(checkpoints, keep=key)  # abandoned renders' checkpoints
    if cleaned:
        info = f"{info}\n{cleaned}"
        host.show_text(node_id, info)
    path = os.path.join(videos, f"infinitetalk_{key[:16]}.mp4")
    times = []

    def on_window(index, total, seconds):
        times.append(seconds)
        left = total - index - 1
        host.show_text(node_id, f"{info}\nwindow {index + 1}/{total} done in {seconds:.1f} s; "
                                f"ETA {_eta(left * sum(times) / len(times))}")

    store = Checkpoints(checkpoints, key)
    with store.active():
        rendered = render(dit, codec, clip_encoder, job, path, store, crf=crf, resume=resume, keep_frames=keep_frames,
                          device=device, callbacks=callbacks, start=start, state=state, prepared=prepared,
                          on_window=on_window, paste=paste)
    rendered.cleanup = cleaned
    return rendered, host.video_from_file(path)
