"""InfiniteTalk Frame Count: how many frames and windows an audio clip needs, with the plan shown on the node."""
from __future__ import annotations

from ..pipeline.window_plan import (MAX_MOTION, MAX_WINDOW, WindowPlanError, frames_for_duration, plan_windows,
                                    validate_settings)

COVER = "cover audio"
FIT = "fit inside audio"


def audio_duration(audio: dict) -> float:
    """Seconds of a core AUDIO dict ``{"waveform": [B, C, T], "sample_rate": int}``."""
    try:
        samples, rate = audio["waveform"].shape[-1], int(audio["sample_rate"])
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"audio: expected ComfyUI AUDIO (a dict with 'waveform' [B,C,T] and 'sample_rate'), "
                         f"got {type(audio).__name__}; connect a Load Audio node.") from e
    if rate <= 0 or samples == 0:
        raise ValueError(f"audio: empty audio ({samples} samples at {rate} Hz); load a file with sound in it.")
    return samples / rate


def frame_count(duration_s: float, fps: float, window: int, motion: int, policy: str):
    """(frame_count, window_count, video duration s, plan text) for ``duration_s`` of audio."""
    validate_settings(window, motion, fps)
    audio_frames = frames_for_duration(duration_s, fps)
    head = f"audio {duration_s:.2f} s = {audio_frames} frames at {fps:g} fps; policy: {policy}"
    frames = audio_frames
    if policy == FIT:
        if audio_frames < window:
            head += (f"\nnothing aligned fits inside {audio_frames} frames (one window is {window}): "
                     f"using one window trimmed to the audio, as '{COVER}'")
        else:
            stride = window - motion
            frames = window + (audio_frames - window) // stride * stride
            head += f"\n{audio_frames - frames} frames of audio left over at the end (the video stops earlier)"
    elif policy != COVER:
        raise ValueError(f"policy={policy!r}: choose '{COVER}' or '{FIT}'.")
    plan = plan_windows([audio_frames], window=window, motion=motion, fps=fps, num_frames=frames)
    return plan.num_frames, len(plan.windows), plan.duration_s, f"{head}\n{plan.summary()}"


class InfiniteTalkFrameCount:
    """Frame count and window plan for an audio clip (or a duration)."""

    DESCRIPTION = ("Frame count for InfiniteTalk's streaming windows. 'cover audio' generates enough windows "
                   "and trims the video to the exact audio length (the sampler does this); 'fit inside audio' "
                   "gives the largest count made of whole windows (for tools that cannot trim).")
    CATEGORY = "InfiniteTalk/utils"
    FUNCTION = "count"
    RETURN_TYPES = ("INT", "INT", "FLOAT", "STRING")
    RETURN_NAMES = ("frame_count", "window_count", "duration", "plan")
    OUTPUT_TOOLTIPS = ("Video frames to generate.", "Windows the sampler runs.",
                       "Video duration in seconds (frame_count / fps).", "The window plan as text.")
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "duration": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 36000.0, "step": 0.01,
                                       "tooltip": "Audio length in seconds; ignored when audio is connected."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0, "step": 0.01,
                                  "tooltip": "Video frame rate (InfiniteTalk is trained at 25)."}),
                "window": ("INT", {"default": 81, "min": 5, "max": MAX_WINDOW, "step": 4,
                                   "tooltip": "Frames per window, 4n+1 (81 is the trained size)."}),
                "motion_frames": ("INT", {"default": 9, "min": 1, "max": MAX_MOTION, "step": 4,
                                          "tooltip": "Frames carried from one window to the next, 4k+1 "
                                                     "(official 9); each window adds window - motion frames."}),
                "policy": ([COVER, FIT], {"default": COVER,
                                          "tooltip": f"'{COVER}': enough windows for the whole audio, trimmed "
                                                     f"to its exact length. '{FIT}': the largest whole-window "
                                                     f"count not longer than the audio (falls back to "
                                                     f"'{COVER}' for audio shorter than one window)."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "Speech track (e.g. from Load Audio); its length replaces "
                                               "'duration'."}),
            },
        }

    def count(self, duration, fps, window, motion_frames, policy, audio=None):
        if audio is None and not duration > 0:
            raise ValueError("InfiniteTalk Frame Count: connect an audio input or set 'duration' above 0 s.")
        seconds = audio_duration(audio) if audio is not None else duration
        try:
            frames, windows, video_s, plan = frame_count(seconds, fps, window, motion_frames, policy)
        except WindowPlanError as e:
            raise ValueError(f"InfiniteTalk Frame Count: {e}") from e
        return {"ui": {"text": [plan]}, "result": (frames, windows, video_s, plan)}


NODE_CLASS_MAPPINGS = {"InfiniteTalkFrameCount": InfiniteTalkFrameCount}
NODE_DISPLAY_NAME_MAPPINGS = {"InfiniteTalkFrameCount": "InfiniteTalk Frame Count"}
