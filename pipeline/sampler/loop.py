"""The streaming window loop (official ``generate_infinitetalk``, spec §5 / Appendix B), window by window.

Per window k of the plan (``window_plan.plan_windows``):
  * reference frame: the source frame at the window's start time (V2V), or the image (I2V);
  * conditioning: CLIP tokens of the reference (+ the face image's, concatenated), and
    ``y = [mask (1 on latent frame 0 only); VAE(reference, then F-1 mid-grey frames)]``;
  * motion latents: VAE(reference) for window 0, else VAE(last m decoded frames of window k-1);
  * start: fresh noise from the window's own generator (seed, k) -> ``z = noise`` at step 0, or with
    ``denoise`` < 1 ``z = add_noise(VAE(source frames of the window), noise, t[start])`` at step ``start``;
  * every step: clean motion latents written into ``z[:, :n_lat]``, the 2 or 3 guidance branches,
    guidance, the solver update, clean motion latents written again;
  * decode, colour transfer (to the window's reference, the first one or a global anchor:
    ``colour_reference``), keep the plan's frames.
Where we deliberately differ from the official code, ``faithful`` holds the choice and ``official_exact``.
The audio rows come from the plan, mirror-padded at the end (never zero audio); the output is exactly
``audio.num_frames`` frames. Memory stays flat: one window of latents/frames at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ..audio.embeds import AudioEmbeds
from ..color import COLOUR_METHODS
from ..speaker_masks import latent_masks
from ..window_plan import WindowPlan, plan_windows
from .branches import NULL_AUDIO, WindowInputs, predict
from .colour_reference import ColourCorrection
from .faithful import COLOUR_REFERENCES, active_choices
from .prompts import ScheduledPrompt, WindowTexts, window_prompts
from .guidance import Guidance
from .schedule import Schedule, add_noise, make_schedule
from .solvers import SOLVERS, make_solver
from . import step_cache
from .source import Source


@dataclass
class Settings:
    """Sampling settings. ``cfg`` = text guidance scale (1 -> 2 model calls per step), ``audio_cfg`` =
    audio guidance scale. ``colour_strength`` 0 = off. ``batch_branches``: run the guidance branches
    as one batch. ``source_end``: 'hold' or 'pingpong' when the source is shorter than the audio.
    ``audio_scale``: weight of the audio cross-attention (1 = trained). ``null_audio``, ``colour_reference``,
    ``colour_method``: our choices where we differ from the official code; ``official_exact`` overrides them all
    with the official ones (``faithful``)."""

    steps: int = 40
    shift: float = 7.0
    cfg: float = 5.0
    audio_cfg: float = 4.0
    denoise: float = 1.0
    solver: str = "euler"
    seed: int = 0
    colour_strength: float = 1.0
    window: int = 81
    motion: int = 9
    apg: bool = False
    apg_momentum: float = -0.75
    apg_norm_threshold: float = 55.0
    batch_branches: bool = False
    source_end: str = "hold"
    audio_scale: float = 1.0
    null_audio: str = NULL_AUDIO[0]
    colour_reference: str = COLOUR_REFERENCES[1]
    colour_method: str = COLOUR_METHODS[0]
    official_exact: bool = False
    step_cache: str = "off"
    cache_threshold: float = 0.0


@dataclass
class Callbacks:
    """Hooks the node passes in (the pipeline never imports the host).

    interrupt(): raises to stop (called before every step); progress(done, total): model steps over
    all windows; preview(window_index, frames [n,H,W,3] 0..1): each finished window; release(): after
    each window (give cached memory back); noise(window_index, shape) -> Tensor: replaces the window's
    initial noise (tests)."""

    interrupt: Callable[[], None] = lambda: None
    progress: Callable[[int, int], None] = lambda done, total: None
    preview: Callable[[int, torch.Tensor], None] = lambda index, frames: None
    release: Callable[[], None] = lambda: None
    noise: Callable[[int, tuple], torch.Tensor] | None = None


@dataclass
class Job:
    """One sampling job. context/context_null: [L,4096] text tokens (prompt, negative prompt);
    audio: the audio node's AudioEmbeds (speakers [L,12,768] x 1|2, fps, num_frames, waveform, sample_rate);
    source: Source (frames, fps, crop size); face: optional [H,W,3] close-up whose CLIP tokens are
    appended; speaker_layout: [2,src_h,src_w] speaker regions (2 speakers only); prompts: a prompt schedule
    (``prompts.ScheduledPrompt``s, the first at 0) that replaces ``context`` window by window."""

    context: torch.Tensor
    context_null: torch.Tensor
    audio: AudioEmbeds
    source: Source
    settings: Settings = field(default_factory=Settings)
    face: torch.Tensor | None = None
    speaker_layout: torch.Tensor | None = None
    prompts: list[ScheduledPrompt] | None = None
    stats: dict = field(default_factory=dict)  # filled while sampling (step cache counts)


@dataclass
class WindowResult:
    """index: the window; frames [n_kept, H, W, 3] float32 0..1 on CPU (its output frames); state: what the
    NEXT window needs from this one (``motion_frames`` [m,H,W,3] CPU), to checkpoint or continue from."""

    index: int
    frames: torch.Tensor
    state: dict = field(default_factory=dict)


def window_seed(seed: int, index: int) -> int:
    """The generator seed of window ``index``: re-running window k alone reproduces it."""
    return (int(seed) * 1_000_003 + int(index) * 7_919 + 1) % (2 ** 63)


def make_plan(job: Job) -> WindowPlan:
    s, a = job.settings, job.audio
    return plan_windows([int(e.shape[0]) for e in a.speakers], window=s.window, motion=s.motion, fps=float(a.fps),
                        num_frames=int(a.num_frames), source_fps=job.source.source_fps,
                        source_frames=job.source.num_frames, source_end=s.source_end)


def validate(job: Job) -> None:
    """Raise ValueError with the fix for settings that cannot run (steps/shift/denoise: ``make_schedule``)."""
    s = job.settings
    if s.solver not in SOLVERS:
        raise ValueError(f"Unknown solver '{s.solver}'; choose one of {sorted(SOLVERS)}.")
    if s.denoise < 1.0 and job.source.is_image:
        raise ValueError("denoise < 1 re-noises the source VIDEO's latents; with a single image use denoise = 1.")
    if len(job.audio.speakers) == 2 and job.speaker_layout is None:
        raise ValueError("two speakers need a speaker layout (default left/right, bbox, or two masks).")
    if s.step_cache not in step_cache.METHODS:
        raise ValueError(f"step cache must be one of {', '.join(step_cache.METHODS)} (got {s.step_cache!r}).")
    if not 0.0 <= s.colour_strength <= 1.0:
        raise ValueError(f"colour strength must be in [0, 1] (got {s.colour_strength}).")
    if not 0.0 <= s.audio_scale <= 10.0:
        raise ValueError(f"audio_scale must be in [0, 10] (got {s.audio_scale}); 1 is the trained strength.")
    active_choices(s)


@dataclass(frozen=True)
class Prepared:
    """A validated job's window plan and schedule (what the node reports is what the loop runs)."""

    plan: WindowPlan
    schedule: Schedule


def prepare(job: Job) -> Prepared:
    """Validate the job and plan it: the one place both happen. ``run``/``sample`` take the result."""
    s = job.settings
    schedule = make_schedule(s.steps, s.shift, s.denoise)  # raises for bad steps/shift/denoise
    validate(job)
    plan = make_plan(job)
    if job.prompts:
        window_prompts(job.prompts, plan)  # raises for a prompt schedule the plan cannot follow
    return Prepared(plan, schedule)


def _y(codec, reference: torch.Tensor, frames: int) -> torch.Tensor:
    """[1,20,T,h,w]: the official mask (1 on latent frame 0) and VAE(reference + mid-grey frames)."""
    video = torch.cat([reference[None], torch.full((frames - 1, *reference.shape), 0.5, device=reference.device)])
    latent = codec.encode(video).float()
    mask = torch.zeros(4, *latent.shape[1:])
    mask[:, 0] = 1
    return torch.cat([mask.to(latent.device), latent])[None]


def sample(model, codec, clip_encoder, job: Job, device: torch.device | str = "cpu",
           callbacks: Callbacks | None = None, prepared: Prepared | None = None, start: int = 0,
           state: dict | None = None) -> Iterator[WindowResult]:
    """Generate the video window by window (a generator of each window's kept frames).

    prepared: ``prepare(job)`` if the caller already has it (validated and planned once).
    start/state: begin at window ``start`` with the ``state`` window ``start - 1`` returned (resume,
    continue); windows depend on each other only through it, so the result equals an uninterrupted run."""
    prepared = prepared or prepare(job)
    cb = callbacks or Callbacks()
    s, src, audio = job.settings, job.source, job.audio
    plan, schedule = prepared.plan, prepared.schedule
    total = len(plan.windows) * schedule.steps_run
    padded = [e.float() for e in audio.speakers]  # window_audio mirrors the end in place (no padded copy)
    th, tw = src.th, src.tw
    masks = None
    if len(padded) == 2:
        masks = latent_masks(job.speaker_layout, th, tw, th // 8, tw // 8).to(device)
    face_tokens = None if job.face is None else clip_encoder.clip(job.face).float().to(device)
    choices = active_choices(s)
    colour = ColourCorrection(choices.colour_reference, choices.colour_method, s.colour_strength, src, plan)
    texts = WindowTexts(job.context, job.prompts, plan, device)
    context_null = job.context_null.float()[None].to(device)
    motion_frames = None if state is None else state["motion_frames"]
    done = start * schedule.steps_run
    reference_index = clip_fea = y = None
    for window in plan.windows[start:]:
        reference = src.frames_at([window.start])[0]
        if src.index(window.start) != reference_index:  # an image (or a held last frame) conditions alike
            reference_index = src.index(window.start)
            clip_fea = clip_encoder.clip(reference).float().to(device)
            if face_tokens is not None:
                clip_fea = torch.cat([clip_fea, face_tokens], dim=1)
            y = _y(codec, reference, plan.window).to(device)
        inputs = WindowInputs(context=texts(window.index), context_null=context_null, clip_fea=clip_fea, y=y,
                              audio=plan.window_audio(window.index, padded)[None].to(device), speaker_masks=masks,
                              null_audio=choices.null_audio, audio_scale=s.audio_scale)
        z_mot = codec.encode(reference[None] if motion_frames is None else motion_frames).float().to(device)
        source_latent = None
        if schedule.start > 0:
            source_latent = codec.encode(src.frames_at(range(window.start, window.end))).float().to(device)
        with step_cache.attached(model, s.step_cache, s.cache_threshold, schedule.t.numel() - 1, schedule.start,
                                 th * tw, job.stats):
            z = _denoise(model, inputs, z_mot, source_latent, schedule, s, window.index, cb, device, total, done)
        done += schedule.steps_run
        frames = codec.decode(z).float().cpu()
        frames = colour(frames, window, reference, device)
        motion_frames = frames[-plan.motion:]
        kept = frames[window.keep_start:window.keep_stop]
        cb.preview(window.index, kept)
        cb.release()
        yield WindowResult(window.index, kept, {"motion_frames": motion_frames})


def _denoise(model, inputs: WindowInputs, z_mot: torch.Tensor, source_latent: torch.Tensor | None,
             schedule: Schedule, s: Settings, index: int, cb: Callbacks, device, total: int,
             done: int) -> torch.Tensor:
    """Run the window's steps; returns the final latent [16,T,h,w] fp32."""
    shape = (16, *inputs.y.shape[2:])
    if cb.noise is not None:
        noise = cb.noise(index, shape).float()
    else:
        generator = torch.Generator().manual_seed(window_seed(s.seed, index))
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    noise = noise.to(device)
    t = schedule.t.to(device)
    z = noise.clone() if source_latent is None else add_noise(source_latent, noise, t[schedule.start])
    n_lat = z_mot.shape[1]
    guidance = Guidance(s.cfg, s.audio_cfg, s.apg, s.apg_momentum, s.apg_norm_threshold)
    solver_gen = torch.Generator().manual_seed(window_seed(s.seed, index) + 1)
    solver = make_solver(s.solver, schedule.t, solver_gen)
    cache = getattr(model, "step_cache", None)
    for i in range(schedule.start, schedule.t.numel() - 1):
        cb.interrupt()
        if cache is not None:
            cache.begin_step(i)
        z[:, :n_lat] = z_mot
        v = guidance(predict(model, z, t[i:i + 1], inputs, guidance.branches, s.batch_branches))
        z = solver.step(z, v, i)
        z[:, :n_lat] = z_mot
        done += 1
        cb.progress(done, total)
    return z


def run(model, codec, clip_encoder, job: Job, device: torch.device | str = "cpu",
        callbacks: Callbacks | None = None, prepared: Prepared | None = None) -> tuple[torch.Tensor, dict, float]:
    """The whole video: (frames [num_frames,H,W,3] float32 0..1, AUDIO dict of the original sound trimmed to the
    frames (AudioEmbeds.output_sound), fps). prepared: ``prepare(job)`` if the caller already has it (validated
    and planned once)."""
    prepared = prepared or prepare(job)
    plan = prepared.plan
    # Each window's frames go straight to their place: the video is never held twice (list + concatenation).
    frames = torch.empty(plan.num_frames, job.source.th, job.source.tw, 3)
    for result in sample(model, codec, clip_encoder, job, device, callbacks, prepared):
        window = plan.windows[result.index]
        frames[window.output_start:window.output_start + window.kept] = result.frames
    waveform, rate = job.audio.output_sound(frames.shape[0])
    return frames, {"waveform": waveform[None].float(), "sample_rate": rate}, float(job.audio.fps)
