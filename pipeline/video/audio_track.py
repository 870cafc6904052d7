"""The sound under the output video: the ONE place that reads the AudioEmbeds' audio fields
(``waveform`` [C,T] float, ``sample_rate``), so what the sampler returns as AUDIO and what it muxes
into its video file are the same samples."""
from __future__ import annotations

import torch


def audio_track(audio) -> tuple[torch.Tensor, int]:
    """(waveform [C,T] float32, sample rate) of an AudioEmbeds: the audio to put under the video."""
    return audio.waveform.float(), int(audio.sample_rate)


def trim_to_frames(audio, fps: float, num_frames: int, first_frame: int = 0) -> tuple[torch.Tensor, int]:
    """The track cut to output frames ``[first_frame, first_frame + num_frames)`` at ``fps``: (waveform [C,n]
    with n = round(num_frames / fps * rate), zero-padded where the audio is shorter, rate)."""
    waveform, rate = audio_track(audio)
    start = round(first_frame / fps * rate)
    samples = round((first_frame + num_frames) / fps * rate) - start
    waveform = waveform[..., start:start + samples]
    if waveform.shape[-1] < samples:
        waveform = torch.nn.functional.pad(waveform, (0, samples - waveform.shape[-1]))
    return waveform, rate
