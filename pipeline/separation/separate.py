"""Any audio -> (vocals, accompaniment), as the reference node (Kijai's MelBandRoFormerSampler) runs the model.

At 44.1 kHz stereo (mono copied to both channels; other rates resampled with soxr_hq, as librosa.resample):
chunks of 352,800 samples (8 s) every 176,400 (50 % overlap), each weighted by a window with 35,280-sample
linear fades (none at the very start and end), overlap-added and divided by the summed weights. Audio longer
than two overlaps is first reflect-padded by one overlap at both ends; a short last chunk is reflect-padded (or,
at most half a chunk, zero-padded) to full length. One difference: the padding decision uses the length at
44.1 kHz, where the reference node uses the length before resampling.

The vocals come back at the input's rate and channel count (mono: the mean of the two model channels), and the
accompaniment is input - vocals. Only one chunk at a time is on the device, so device memory does not grow with
the length; the host holds the whole audio (input, accumulated vocals).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..audio.preprocess import as_channels, resample
from .roformer import MelBandRoformer

CHUNK = 352_800
STEP = CHUNK // 2
FADE = CHUNK // 10
BORDER = CHUNK - STEP


def chunk_starts(length: int) -> list[int]:
    """Start sample of every chunk over ``length`` samples (after any border padding)."""
    return list(range(0, length, STEP))


def padded_length(length: int) -> int:
    return length + 2 * BORDER if length > 2 * BORDER else length


def _window(first: bool, last: bool, device) -> torch.Tensor:
    window = torch.ones(CHUNK)
    window[-FADE:] *= torch.linspace(1, 0, FADE)
    window[:FADE] *= torch.linspace(0, 1, FADE)
    if first:
        window[:FADE] = 1
    elif last:  # as the reference: a chunk that is both first and last keeps its fade-out
        window[-FADE:] = 1
    return window.to(device)


@torch.no_grad()
def vocals_44k(model: MelBandRoformer, audio: torch.Tensor, interrupt: Callable[[], None] = lambda: None,
               progress: Callable[[int, int], None] = lambda done, total: None) -> torch.Tensor:
    """Stereo audio [2, T] float32 at 44.1 kHz (CPU) -> vocals [2, T] float32 (CPU); the model runs where it is.

    interrupt() is called before each chunk (it raises to stop); progress(done, total) after each."""
    length = audio.shape[-1]
    padded = length > 2 * BORDER
    if padded:
        audio = F.pad(audio[None], (BORDER, BORDER), mode="reflect")[0]
    total = audio.shape[-1]
    vocals = torch.zeros_like(audio)
    weight = torch.zeros(total)
    starts = chunk_starts(total)
    model_device = next(model.parameters()).device
    for done, start in enumerate(starts):
        interrupt()
        part = audio[:, start:start + CHUNK]
        n = part.shape[-1]
        if n < CHUNK:
            mode = "reflect" if n > CHUNK // 2 + 1 else "constant"
            part = F.pad(part[None], (0, CHUNK - n), mode=mode)[0]
        out = model(part[None].to(model_device))[0]
        window = _window(start == 0, start + CHUNK >= total, out.device)
        vocals[:, start:start + n] += (out[:, :n] * window[:n]).cpu()
        weight[start:start + n] += window[:n].cpu()
        progress(done + 1, len(starts))
    vocals /= weight
    return vocals[:, BORDER:-BORDER] if padded else vocals


def separate_vocals(model: MelBandRoformer, waveform, sample_rate: int, interrupt: Callable[[], None] = lambda: None,
                    progress: Callable[[int, int], None] = lambda done, total: None,
                    what: str = "audio") -> tuple[torch.Tensor, torch.Tensor]:
    """waveform [T], [C, T] or [1, C, T] (mono or stereo, any rate) -> (vocals, accompaniment), each [C, T]
    float32 at ``sample_rate``; accompaniment = input - vocals."""
    data, rate = as_channels(waveform, sample_rate, what)
    channels, length = data.shape
    if channels > 2:
        raise ValueError(f"{what}: {channels} channels; vocal separation takes mono or stereo audio. Down-mix it to "
                         f"stereo first.")
    rate_44k = model.cfg.sample_rate
    stereo = np.repeat(data, 2, axis=0) if channels == 1 else data
    vocals = vocals_44k(model, torch.from_numpy(resample(stereo, rate, rate_44k)), interrupt, progress)
    if channels == 1:
        vocals = vocals.mean(dim=0, keepdim=True)
    vocals = resample(vocals.numpy(), rate_44k, rate)[:, :length]
    vocals = torch.from_numpy(np.pad(vocals, ((0, 0), (0, length - vocals.shape[-1]))))
    original = torch.from_numpy(data)
    accompaniment = original - vocals
    # Where float32 allows, make the pair sum back to the input bit for bit.
    return original - accompaniment, accompaniment
