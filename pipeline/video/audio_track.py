"""The sound under a span of the output video, through the one place that reads the AudioEmbeds' audio
(``AudioEmbeds.output_sound``): what the sampler returns as AUDIO and what it muxes into its video file
are the same samples."""
from __future__ import annotations

import torch


def trim_to_frames(audio, fps: float, num_frames: int, first_frame: int = 0) -> tuple[torch.Tensor, int]:
    """The sound of output frames ``[first_frame, first_frame + num_frames)``: (waveform [C, n] float32, rate),
    n = round((first_frame + num_frames) * rate / fps) - round(first_frame * rate / fps)."""
    waveform, rate = audio.output_sound(first_frame + num_frames)
    return waveform[..., round(first_frame * rate / fps):].float(), rate
