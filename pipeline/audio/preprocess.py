"""Waveform preparation as the official ``audio_prepare_single`` / ``audio_prepare_multi``:
down-mix, resample to 16 kHz (soxr_hq, librosa.load's default), loudness to -23 LUFS
(ITU-R BS.1770 via pyloudnorm), and the two-speaker combination modes.

Tracks are 1-D numpy arrays: float32 after loading, float64 after loudness normalisation
(what the official code returns with numpy >= 2).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

SAMPLE_RATE = 16000
TARGET_LUFS = -23.0
COMBINE_MODES = ("add", "para")

log = logging.getLogger("infinitetalk_lipsync")


def as_channels(waveform, sample_rate, what: str = "audio") -> tuple[np.ndarray, int]:
    """A waveform [T], [C, T] or [1, C, T] (ComfyUI AUDIO) tensor or array -> ([C, T] float32 array, rate).

    Raises ValueError naming ``what`` for batches, empty or non-finite audio and bad sample rates.
    """
    data = waveform.detach().cpu().float().numpy() if isinstance(waveform, torch.Tensor) \
        else np.asarray(waveform, dtype=np.float32)
    if data.ndim == 3:
        if data.shape[0] != 1:
            raise ValueError(f"{what}: a batch of {data.shape[0]} audio clips was given; pass one clip "
                             f"(split the batch, or pick one with an audio-select node).")
        data = data[0]
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise ValueError(f"{what}: waveform must be [T], [C, T] or [1, C, T]; got shape {tuple(data.shape)}.")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"{what}: the waveform is empty (shape {tuple(data.shape)}); connect audio that has samples.")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise ValueError(f"{what}: {bad} samples are NaN or infinite; the audio file is corrupt or a previous "
                         f"node produced invalid audio. Re-export or clean the audio.")
    try:
        sample_rate = int(sample_rate)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: sample_rate must be a positive integer, got {sample_rate!r}.") from None
    if sample_rate <= 0:
        raise ValueError(f"{what}: sample_rate must be a positive integer, got {sample_rate}.")
    return data, sample_rate


def resample(data: np.ndarray, rate: int, target: int) -> np.ndarray:
    """[T] or [C, T] float32 -> soxr_hq at ``target`` with librosa's length ceil(T * target / rate)."""
    if rate == target:
        return data
    import soxr

    # soxr takes [T, C]; librosa fixes the length to ceil(T * ratio), zero-padding or trimming soxr's output.
    out = soxr.resample(data.T, rate, target, "soxr_hq").T
    size = int(np.ceil(data.shape[-1] * (float(target) / rate)))
    if out.shape[-1] >= size:
        return np.ascontiguousarray(out[..., :size])
    return np.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, size - out.shape[-1])])


def to_mono_16k(waveform, sample_rate: int, what: str = "audio") -> np.ndarray:
    """Any waveform -> mono float32 at 16 kHz, as ``librosa.load(path, sr=16000)``.

    waveform: [T], [C, T] or [1, C, T] (ComfyUI AUDIO) tensor or array; channels are averaged
    (librosa's down-mix) before soxr_hq resampling. ``what`` names the input in errors.
    Returns [N] float32 with N = ceil(T * 16000 / sample_rate).
    """
    data, sample_rate = as_channels(waveform, sample_rate, what)
    mono = np.ascontiguousarray(data.mean(axis=0, dtype=np.float32))
    return resample(mono, sample_rate, SAMPLE_RATE)


def integrated_loudness(track: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """BS.1770 integrated loudness (LUFS) with pyloudnorm.

    pyloudnorm needs at least one 0.4 s gating block; a shorter clip is measured on whole
    copies of itself, end to end, until they fill a block (measurement only). Repetition keeps
    the clip's mean power, whereas zero padding would lower it and bias the gain upwards.
    """
    import pyloudnorm

    block = int(np.ceil(0.4 * sample_rate))
    size = track.shape[-1]
    measured = track if size >= block else np.tile(track, -(-block // size))
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(measured))


def loudness_normalize(track: np.ndarray, target_lufs: float = TARGET_LUFS,
                       what: str = "audio") -> tuple[np.ndarray, float]:
    """The official ``loudness_norm``: gain to ``target_lufs``; unchanged when |loudness| > 100
    (silence reads -inf). Returns (float64 track, measured loudness in LUFS)."""
    loudness = integrated_loudness(track)
    if abs(loudness) > 100:
        log.warning("%s: loudness %.1f LUFS (silent or nearly so); loudness normalisation skipped.", what, loudness)
        return track.astype(np.float64), loudness
    gain = 10.0 ** ((target_lufs - loudness) / 20.0)
    return track.astype(np.float64) * gain, loudness


def combine_speakers(first: np.ndarray, second: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Two normalised tracks -> two equal-length speaker tracks (official ``audio_prepare_multi``).

    'add': sequential turns, speaker 1 then speaker 2 (each silent during the other's turn).
    'para': simultaneous; the shorter track is padded with trailing silence (the official code
    requires equal lengths and crashes otherwise).
    """
    if mode == "add":
        return (np.concatenate([first, np.zeros_like(second)]),
                np.concatenate([np.zeros_like(first), second]))
    if mode == "para":
        size = max(first.shape[-1], second.shape[-1])
        return (np.pad(first, (0, size - first.shape[-1])), np.pad(second, (0, size - second.shape[-1])))
    raise ValueError(f"Unknown speaker combination mode {mode!r}; use one of {COMBINE_MODES}.")


def normalize_input(track: np.ndarray) -> np.ndarray:
    """Wav2Vec2FeatureExtractor's do_normalize: float32 (x - mean) / sqrt(var + 1e-7) over the clip."""
    x = track.astype(np.float32)
    return (x - x.mean()) / np.sqrt(x.var() + 1e-7)
