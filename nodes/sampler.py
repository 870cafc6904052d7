"""InfiniteTalk Sampler: source video (or image) + audio embeddings -> lip-synced frames, audio and fps."""
from __future__ import annotations

import numpy as np
import torch

from ..pipeline.color import COLOUR_METHODS
from ..pipeline.resolution import BUCKETS, target_size
from ..pipeline.sampler.loop import Callbacks, Job, Settings, prepare
from ..pipeline.sampler.budget import estimate
from ..pipeline.sampler.branches import NULL_AUDIO
from ..pipeline.sampler.faithful import COLOUR_REFERENCES, describe
from ..pipeline.sampler.guidance import branch_names
from ..pipeline.sampler.prompts import ScheduledPrompt, window_prompts
from ..pipeline.sampler import step_cache
from ..pipeline.sampler.step_cache import summary as cache_summary
from ..pipeline.sampler.solvers import SOLVERS
from ..pipeline.video.writer import DEFAULT_CRF
from ..pipeline.mask.composite import mask_size_note
from ..pipeline.speaker_masks import default_layout
from ..pipeline.window_plan import MAX_MOTION, MAX_WINDOW, SOURCE_END
from . import host
from .adapters import ComfyClipVision, ComfyVAE
from .prompt_schedule import START_KEY, UNIT_KEY
from .streaming import face_note, make_source, open_source, source_size, stream_render, wants_frames

TEXT_LEN = 512
RESOLUTIONS = [f"{b}p bucket" for b in BUCKETS] + ["custom width/height"]


def _dit(model):
    """INFINITETALK_MODEL is the DiT module itself or a holder with ``.model``."""
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    if not isinstance(module, torch.nn.Module):
        raise ValueError("model: expected an InfiniteTalk model from 'InfiniteTalk Model Loader'.")
    return module


def _text(conditioning, name: str, dim: int) -> torch.Tensor:
    """CONDITIONING [[tensor [1,L,dim], {...}], ...] -> [min(L,512), dim] (the first entry; dim 4096 for umT5-XXL)."""
    try:
        tokens = conditioning[0][0]
    except (IndexError, TypeError, KeyError):
        raise ValueError(f"{name}: expected CONDITIONING from CLIPTextEncode with the umT5-XXL (wan) text encoder.")
    if tokens.dim() != 3 or tokens.shape[-1] != dim:
        raise ValueError(f"{name}: text tokens have shape {tuple(tokens.shape)}, expected [1, L, {dim}]; load "
                         f"umt5_xxl with CLIPLoader type 'wan'.")
    return tokens[0, :TEXT_LEN].float()  # the official tokenizer truncates to 512 tokens


def _schedule(conditioning, dim: int) -> list[ScheduledPrompt] | None:
    """The prompt schedule of a CONDITIONING from 'InfiniteTalk Prompt Schedule', or None for a plain prompt."""
    if not isinstance(conditioning, list) or not conditioning or not all(
            isinstance(e, (list, tuple)) and len(e) > 1 and isinstance(e[1], dict) and START_KEY in e[1]
            for e in conditioning):
        return None
    return [ScheduledPrompt(float(e[1][START_KEY]), _text([e], f"prompt {k + 1} of the schedule", dim),
                            e[1].get(UNIT_KEY, "seconds")) for k, e in enumerate(conditioning)]


def _layout(mask_1, mask_2, src_h: int, src_w: int) -> torch.Tensor:
    if (mask_1 is None) != (mask_2 is None):
        raise ValueError("speaker masks: connect both mask_1 and mask_2, or neither (default left/right halves).")
    if mask_1 is None:
        return default_layout(src_h, src_w)
    masks = []
    for name, m in (("mask_1", mask_1), ("mask_2", mask_2)):
        m = m[0] if m.dim() == 3 else m
        if m.dim() != 2:
            raise ValueError(f"{name}: expected a MASK [H,W] or [1,H,W], got {tuple(m.shape)}.")
        masks.append(torch.nn.functional.interpolate(m[None, None].float(), size=(src_h, src_w), mode="nearest")[0, 0])
    return torch.stack(masks)


def _warnings(settings: Settings, model) -> list[str]:
    out = []
    loras = [l.get("name", "") for l in getattr(getattr(model, "report", None), "loras", []) or []]
    if settings.cfg > 1.0 and (settings.steps <= 8 or loras):
        out.append(f"WARNING: cfg {settings.cfg:g} with {'LoRA ' + ', '.join(loras) if loras else f'{settings.steps} steps'}: "
                   f"step-distilled LoRAs (lightx2v, FusionX) expect cfg 1 (audio_cfg ~2, shift ~11 or 2); "
                   f"cfg > 1 triples the model calls and over-saturates.")
    return out


def _preview(frames: torch.Tensor):
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image.fromarray((frames[-1].clamp(0, 1) * 255).round().to(torch.uint8).numpy().astype(np.uint8))


def _schedule_line(prompts: list[ScheduledPrompt], plan) -> str:
    """Where each scheduled prompt takes over (or that no window takes it: a later one starts at the same window)."""
    first = {}
    for w, k in zip(plan.windows, window_prompts(prompts, plan)):
        first.setdefault(k, w)
    parts = []
    for k in range(len(prompts)):
        w = first.get(k)
        parts.append(f"prompt {k + 1} from window {w.index} ({w.start / plan.fps:.2f} s)" if w is not None
                     else f"prompt {k + 1} unused (no window takes it)")
    return "prompt schedule: " + "; ".join(parts)


class InfiniteTalkSampler:
    CATEGORY = "InfiniteTalk/sampling"
    FUNCTION = "sample"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT", "VIDEO")
    RETURN_NAMES = ("frames", "audio", "fps", "video")
    OUTPUT_NODE = False
    DESCRIPTION = ("Generates the lip-synced video window by window (official InfiniteTalk streaming loop), "
                   "streamed to an H.264 mp4 with the audio: connect video -> SaveVideo (any length, flat memory, "
                   "resumes after Cancel). frames (IMAGE) holds the whole video in RAM, only when connected.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("INFINITETALK_MODEL", {"tooltip": "The InfiniteTalk DiT from 'InfiniteTalk Model Loader'."}),
                "vae": ("VAE", {"tooltip": "Wan 2.1 VAE (wan_2.1_vae) from the core Load VAE node."}),
                "clip_vision": ("CLIP_VISION", {"tooltip": "clip_vision_h from the core Load CLIP Vision node; "
                                                           "its penultimate tokens of each window's reference frame condition the model."}),
                "positive": ("CONDITIONING", {"tooltip": "Prompt from CLIPTextEncode (umT5-XXL, CLIPLoader type 'wan')."}),
                "negative": ("CONDITIONING", {"tooltip": "Negative prompt (official default: the Wan negative prompt). "
                                                         "Unused when cfg = 1."}),
                "audio_embeds": ("INFINITETALK_AUDIO_EMBEDS", {"tooltip": "Speech features from 'InfiniteTalk Audio Embeds'; "
                                                                         "the output has exactly the audio's length."}),
                "source_fps": ("FLOAT", {"default": 25.0, "min": 0.01, "max": 240.0, "step": 0.001,
                                         "tooltip": "Frame rate of the source video (GetVideoComponents' fps); reference frames "
                                                    "are taken by timestamp. Ignored for an image."}),
                "steps": ("INT", {"default": 40, "min": 1, "max": 200, "tooltip": "Denoising steps per window (40 official; 4-8 with lightx2v)."}),
                "shift": ("FLOAT", {"default": 7.0, "min": 0.1, "max": 50.0, "step": 0.1,
                                    "tooltip": "Timestep shift: 7 at 480p / 11 at 720p (official CLI); guides use 3 (480p) / 5 (720p) without LoRA and ~11 with the lightx2v LoRA."}),
                "cfg": ("FLOAT", {"default": 5.0, "min": 1.0, "max": 20.0, "step": 0.1,
                                  "tooltip": "Text guidance. 1 = 2 model calls per step (cond, no-audio); >1 = 3 calls."}),
                "audio_cfg": ("FLOAT", {"default": 4.0, "min": 1.0, "max": 20.0, "step": 0.1,
                                        "tooltip": "Audio guidance (lip-sync strength): 4 official, ~2 with lightx2v."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1.0, "step": 0.01,
                                      "tooltip": "1 = sparse-frame dubbing from noise. <1 (0.35-0.5) starts each window from the "
                                                 "source video's latents noised to that level and runs only the remaining steps."}),
                "solver": (sorted(SOLVERS), {"default": "euler", "tooltip": "euler = the official update; lcm for step-distilled LoRAs."}),
                "seed": ("INT", {"default": 42, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "Each window derives its own generator from (seed, window index)."}),
                "colour_correction": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                                "tooltip": "Strength of the colour match of every window to the colour reference "
                                                           "(colour_reference / colour_method below; 0 = off; official CLI 1.0)."}),
                "resolution": (RESOLUTIONS, {"default": RESOLUTIONS[0],
                                             "tooltip": "Official aspect-ratio buckets (cover-resize + centre crop), or custom width/height."}),
                "width": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 16, "tooltip": "Custom width (multiple of 16); only with 'custom width/height'."}),
                "height": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 16, "tooltip": "Custom height (multiple of 16); only with 'custom width/height'."}),
                "window": ("INT", {"default": 81, "min": 5, "max": MAX_WINDOW, "step": 4, "tooltip": "Frames per window (4n+1; 81 trained)."}),
                "motion_frames": ("INT", {"default": 9, "min": 1, "max": MAX_MOTION, "step": 4,
                                          "tooltip": "Frames of the previous window carried as motion latents (4k+1; 9 official)."}),
            },
            "optional": {
                "source_video": ("VIDEO", {"tooltip": "The video to dub (core Load Video), read window by window: any "
                                                      "length at flat memory. Connect this or source, not both."}),
                "source": ("IMAGE", {"tooltip": "One image (I2V) or a short clip's frames (V2V); the whole clip sits "
                                                "in RAM, so use source_video for videos. Connect this or source_video."}),
                "face_plan": ("INFINITETALK_FACE_PLAN", {"tooltip": "Face-only dubbing: the plan from 'InfiniteTalk "
                                                                    "Face Plan (video)' made on source_video. Each window "
                                                                    "generates the face crop and pastes it into the "
                                                                    "full-resolution frames (video output)."}),
                "continue_video": ("VIDEO", {"tooltip": "Continue this previous render (same window/motion_frames, the "
                                                        "whole audio from its start): generation starts at its end "
                                                        "from its last motion frames, as one long render would; the "
                                                        "outputs hold the new part only."}),
                "crf": ("INT", {"default": DEFAULT_CRF, "min": 0, "max": 51, "tooltip": "H.264 quality of the video "
                                                                                         "output (lower = better, 0 = lossless luma; 17-23 usual)."}),
                "resume": ("BOOLEAN", {"default": True, "tooltip": "Keep finished windows on disk "
                                                                   "(output/infinitetalk_checkpoints) so that queueing the "
                                                                   "same render after Cancel or a crash resumes at the "
                                                                   "first unfinished window. Off: always start over."}),
                "face_image": ("IMAGE", {"tooltip": "Optional close-up of the face: its CLIP tokens are appended to every window's."}),
                "mask_1": ("MASK", {"tooltip": "Two speakers: region of speaker 1 (default: left half)."}),
                "mask_2": ("MASK", {"tooltip": "Two speakers: region of speaker 2 (default: right half)."}),
                "source_end": (list(SOURCE_END), {"default": "hold", "tooltip": "Source shorter than the audio: hold the last frame or ping-pong."}),
                "batch_branches": ("BOOLEAN", {"default": False, "tooltip": "Run the 2-3 guidance branches as one batch. Same result; more VRAM. At 480p/720p one branch already fills a large GPU (H100: 28.7 s batched vs 27.7 s sequential per window), so it only helps small resolutions."}),
                "apg": ("BOOLEAN", {"default": False, "tooltip": "Adaptive projected guidance instead of plain CFG."}),
                "apg_momentum": ("FLOAT", {"default": -0.75, "min": -1.0, "max": 1.0, "step": 0.05, "tooltip": "APG momentum (official -0.75)."}),
                "apg_norm_threshold": ("FLOAT", {"default": 55.0, "min": 0.0, "max": 1000.0, "step": 1.0, "tooltip": "APG norm clip (official 55; 0 = off)."}),
                "audio_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.05,
                                          "tooltip": "Strength of the audio conditioning: every block adds audio_scale x its audio "
                                                     "cross-attention (1 = as trained; >1 stronger mouth motion). Unlike audio_cfg "
                                                     "it costs no model call."}),
                "official_exact": ("BOOLEAN", {"default": False,
                                               "tooltip": "Take the official InfiniteTalk choice wherever this pack differs on purpose "
                                                          "(overrides the three inputs below): one zero speaker in the no-audio branch, "
                                                          "colour matched to the first frame, Lab mean/std. Resizing is always official; "
                                                          "source frames are always looked up by timestamp (= official at 25 fps)."}),
                "colour_reference": (list(COLOUR_REFERENCES), {"default": COLOUR_REFERENCES[1],
                                     "tooltip": "What every window's colours are matched to. first frame (official): the first "
                                                "window's source frame, for the whole video. each window's reference: the source "
                                                "frame that window is conditioned on (follows lighting changes in a video). global "
                                                "anchor: one target pooled from all windows' source frames. The same for an image."}),
                "colour_method": (list(COLOUR_METHODS), {"default": COLOUR_METHODS[0],
                                  "tooltip": "lab mean/std (official, Reinhard-style); histogram (per RGB channel, matches the "
                                             "whole distribution); mkl (RGB mean and covariance, keeps channel correlations)."}),
                "two_speaker_null_audio": (list(NULL_AUDIO), {"default": NULL_AUDIO[0],
                                           "tooltip": "Two speakers, the no-audio guidance branches. one zero speaker (official): the "
                                                      "model's one-speaker path, as the released model's guidance was tuned. silence "
                                                      "both speakers: keeps the two-speaker path (speaker masks, 64 audio tokens) with "
                                                      "zero audio, so audio_cfg pushes only the audio; changes the video noticeably "
                                                      "when audio_cfg != 1. No effect with one speaker."}),
                "step_cache": (list(step_cache.METHODS), {"default": "off", "tooltip": "Skip the transformer on steps where it would change little, reusing its last change (TeaCache / MagCache / EasyCache with the published Wan 2.1 I2V 480p/720p tables). For 20+ steps; nothing to skip at 4-8 steps. The node reports how many model calls were skipped."}),
                "cache_threshold": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 5.0, "step": 0.01, "tooltip": "Step cache threshold; 0 = the method's published default (TeaCache 0.2, MagCache 0.12, EasyCache 0.05). Higher skips more."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT"},
        }

    def sample(self, model, vae, clip_vision, positive, negative, audio_embeds, source_fps, steps, shift, cfg,
               audio_cfg, denoise, solver, seed, colour_correction, resolution, width, height, window, motion_frames,
               source=None, source_video=None, face_plan=None, continue_video=None, crf=DEFAULT_CRF, resume=True,
               face_image=None, mask_1=None, mask_2=None, source_end="hold", batch_branches=False, apg=False,
               apg_momentum=-0.75, apg_norm_threshold=55.0, audio_scale=1.0, official_exact=False,
               colour_reference=COLOUR_REFERENCES[1], colour_method=COLOUR_METHODS[0],
               two_speaker_null_audio=NULL_AUDIO[0], step_cache="off", cache_threshold=0.0,
               unique_id=None, prompt=None):
        dit = _dit(model)
        if hasattr(dit, "interrupt"):  # a multi-GPU pool: Cancel while it waits for its workers
            dit.interrupt = host.throw_if_interrupted
        frames, video, source_fps = open_source(source, source_video, source_fps)
        src_h, src_w = source_size(frames, video, face_plan)
        custom = resolution == RESOLUTIONS[-1]
        if custom and not (width and height):
            raise ValueError(f"resolution 'custom width/height' needs width and height as positive multiples of 16 "
                             f"(got {width}x{height}), e.g. 832x480; or choose a bucket resolution "
                             f"({', '.join(RESOLUTIONS[:-1])}) to size the output from the source.")
        th, tw = target_size(src_h, src_w, resolution.split("p")[0] if not custom else "480",
                             width if custom else 0, height if custom else 0)
        fps = float(getattr(audio_embeds, "fps", 0) or 0)
        if not fps > 0:
            raise ValueError("audio_embeds: fps must be > 0; re-run 'InfiniteTalk Audio Embeds'.")
        settings = Settings(steps=steps, shift=shift, cfg=cfg, audio_cfg=audio_cfg, denoise=denoise, solver=solver,
                            seed=seed, colour_strength=colour_correction, window=window, motion=motion_frames, apg=apg,
                            apg_momentum=apg_momentum, apg_norm_threshold=apg_norm_threshold,
                            batch_branches=batch_branches or getattr(dit, "wants_batched_branches", False),
                            source_end=source_end, audio_scale=audio_scale,
                            null_audio=two_speaker_null_audio, colour_reference=colour_reference,
                            colour_method=colour_method, official_exact=official_exact,
                            step_cache=step_cache, cache_threshold=cache_threshold)
        two = len(audio_embeds.speakers) == 2
        text_dim = getattr(getattr(dit, "config", None), "text_dim", 4096)
        prompts = _schedule(positive, text_dim)
        job = Job(context=_text(positive, "positive", text_dim), context_null=_text(negative, "negative", text_dim),
                  audio=audio_embeds,
                  source=make_source(frames, video, source_fps, fps, th, tw, source_end, face_plan), settings=settings,
                  face=None if face_image is None else face_image[0, ..., :3],
                  speaker_layout=_layout(mask_1, mask_2, src_h, src_w) if two else None, prompts=prompts)
        prepared = prepare(job)  # validated and planned once; the loop runs exactly this plan
        plan, schedule = prepared.plan, prepared.schedule
        mode = "I2V (image)" if job.source.is_image else (f"V2V ({job.source.num_frames} frames @ {source_fps:g} fps"
                                                          f"{', streamed' if video is not None else ''}"
                                                          f"{face_note(face_plan)})")
        denoise_warning = schedule.denoise_warning(denoise)
        notes = [n for n in (mask_size_note(m, src_h, src_w, name) for name, m in (("mask_1", mask_1), ("mask_2", mask_2))
                             if m is not None and two) if n]
        info = "\n".join(_warnings(settings, model) + ([denoise_warning] if denoise_warning else []) + notes + [
            f"{mode}; {'bucket' if not custom else 'custom'} {tw}x{th} (from {src_w}x{src_h}); "
            f"{len(plan.windows)} windows x {schedule.steps_run} of {steps} steps (denoise {denoise:g}, starting at "
            f"t={float(schedule.t[schedule.start]):.1f} = noise level {schedule.start_noise:.3f}), {solver}, "
            f"{len(branch_names(cfg))} model calls per step",
            describe(settings, len(audio_embeds.speakers), job.source.is_image)]
            + ([_schedule_line(prompts, plan)] if prompts else []) + [plan.summary()])
        keep = wants_frames(prompt, unique_id)
        device = getattr(model, "device", None) or host.torch_device()
        budget = estimate(windows=len(plan.windows), steps_run=schedule.steps_run, branches=len(branch_names(cfg)),
                          frames=plan.num_frames, window=window, th=th, tw=tw, model=dit,
                          batch_branches=batch_branches, keep_frames=keep,
                          source_hw=None if video is None else (video.height, video.width),
                          output_hw=None if face_plan is None else tuple(face_plan.crop.source_size))
        host_free, device_free = host.available_ram(), host.free_device_memory(device)
        info += "\n" + "\n".join(budget.lines(host_free, device_free))
        host.show_text(unique_id, info)
        budget.check(host_free, device_free, batch_branches)

        bar = host.Progress(len(plan.windows) * schedule.steps_run, node_id=unique_id)
        callbacks = Callbacks(interrupt=host.throw_if_interrupted,
                              progress=lambda done, total: bar.update(done - bar.value),
                              preview=lambda k, frames: bar.update(0, preview=_preview(frames)),
                              release=host.soft_empty_cache)
        try:
            with torch.inference_mode():
                rendered, video_out = stream_render(
                    dit, ComfyVAE(vae), ComfyClipVision(clip_vision), job, prepared, crf=crf, resume=resume, keep_frames=keep,
                    key_parts={"model": dit, "model_report": getattr(model, "report", None),
                               "vae": getattr(vae, "first_stage_model", repr(vae)),
                               "clip_vision": getattr(clip_vision, "model", repr(clip_vision))},
                    continue_video=continue_video, device=device, callbacks=callbacks, node_id=unique_id, info=info)
        finally:
            if video is not None:
                video.close()
        if rendered.cleanup:
            info += f"\n{rendered.cleanup}"
        if rendered.resumed_at:
            info += f"\nresumed at window {rendered.resumed_at + 1} (earlier windows from the checkpoint)"
        if step_cache != "off":  # the input (a str) shadows the module here
            info += "\n" + cache_summary(job.stats)
            host.show_text(unique_id, info)
        out_frames = rendered.frames if keep else torch.zeros(1, th, tw, 3)
        return {"ui": {"text": [info]}, "result": (out_frames, rendered.audio, rendered.fps, video_out)}


NODE_CLASS_MAPPINGS = {"InfiniteTalkSampler": InfiniteTalkSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"InfiniteTalkSampler": "InfiniteTalk Sampler"}
