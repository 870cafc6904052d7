"""The sound of the output video: the user's own audio at its own sample rate and channels, levels untouched.

wav2vec2 hears a 16 kHz mono, loudness-normalised copy (preprocess.py); the video keeps the original. Both
share one timeline: the 16 kHz tracks decide where speaker 2 starts (``add``), how long the result is and
where the crop falls, and the original follows them sample-accurately at its own rate.
"""
from __future__ import annotations

import numpy as np
import torch

from .preprocess import SAMPLE_RATE, as_channels, resample


def _fit(data: np.ndarray, channels: int, size: int) -> np.ndarray:
    """[c, T] -> [channels, size]: mono is copied to every channel, other counts are down-mixed first;
    the end is zero-padded or cut."""
    if data.shape[0] != channels:
        mono = data if data.shape[0] == 1 else data.mean(axis=0, keepdims=True)
        data = np.repeat(mono, channels, axis=0)
    if data.shape[-1] >= size:
        return data[:, :size]
    return np.pad(data, ((0, 0), (0, size - data.shape[-1])))


def _at_rate(samples_16k: int, rate: int) -> int:
    """A position on the 16 kHz timeline -> the same instant in samples at ``rate``."""
    return int(round(samples_16k * rate / SAMPLE_RATE))


def speakers_sound(audios: list[tuple[object, int]], lengths_16k: list[int], mode: str) -> tuple[np.ndarray, int]:
    """1 or 2 original (waveform, sample_rate) inputs -> (mix [C, N] float32, rate), as heard in the video.

    The highest input rate and channel count win (a lower-rate speaker is resampled with soxr_hq, a mono
    one copied to every channel); levels are left alone. ``lengths_16k``: each speaker's 16 kHz track length,
    so ``add`` (speaker 2 after speaker 1) and ``para`` (both at once, the shorter padded with silence)
    place the speakers exactly where their embeddings are.
    """
    inputs = [as_channels(w, r, f"speaker {i + 1} audio") for i, (w, r) in enumerate(audios)]
    rate = max(r for _, r in inputs)
    channels = max(d.shape[0] for d, _ in inputs)
    tracks = [_fit(resample(d, r, rate), channels, _at_rate(n, rate)) for (d, r), n in zip(inputs, lengths_16k)]
    if len(tracks) == 1:
        return tracks[0], rate
    if mode == "add":
        return np.concatenate(tracks, axis=-1), rate
    size = max(t.shape[-1] for t in tracks)
    return sum(_fit(t, channels, size) for t in tracks), rate


def crop_sound(sound: np.ndarray, rate: int, window_16k: slice) -> torch.Tensor:
    """The crop of the 16 kHz timeline applied to the sound -> [C, T] float32 tensor (padded if it is shorter)."""
    start, end = _at_rate(window_16k.start, rate), _at_rate(window_16k.stop, rate)
    return torch.from_numpy(np.ascontiguousarray(_fit(sound[:, start:end], sound.shape[0], end - start)))


def trim_to_frames(waveform: torch.Tensor, rate: int, fps: float, num_frames: int) -> torch.Tensor:
    """[C, T] -> [C, round(num_frames * rate / fps)]: exactly as long as ``num_frames`` video frames
    (cut, or padded with silence)."""
    samples = int(round(num_frames * rate / fps))
    if waveform.shape[-1] >= samples:
        return waveform[:, :samples]
    return torch.nn.functional.pad(waveform, (0, samples - waveform.shape[-1]))
