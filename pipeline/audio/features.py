"""Speech -> InfiniteTalk audio embeddings (official ``audio_prepare_*`` + ``get_embedding``).

Per speaker: mono 16 kHz (soxr_hq) -> loudness to -23 LUFS -> optional input normalisation ->
wav2vec2 CNN -> linear interpolation to int(duration * fps) steps -> transformer -> every layer's
output stacked -> [L, num_layers, hidden] float32 on CPU.

The transformer always sees the whole clip: attention spans the full sequence, so splitting it
would change the numbers. Memory is bounded with a memory-efficient attention kernel
(scaled_dot_product_attention) rather than by chunking.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .embeds import AudioEmbeds
from .preprocess import (SAMPLE_RATE, TARGET_LUFS, as_channels, combine_speakers, loudness_normalize,
                         normalize_input, to_mono_16k)
from .sound import crop_sound, speakers_sound
from .wav2vec2 import Wav2Vec2Encoder


def frame_count(num_samples: int, fps: float) -> int:
    """Embedding rows for a clip: int(samples / 16000 * fps), the official expression."""
    return int(num_samples / SAMPLE_RATE * fps)


@contextmanager
def _interruptible(model: Wav2Vec2Encoder, interrupt: Callable[[], None] | None):
    """Call ``interrupt()`` before every CNN chunk and transformer layer (each well under a second even
    for minutes of audio on a CPU), so a cancel request stops the encoder promptly."""
    if interrupt is None:
        yield
        return
    modules = [layer.conv for layer in model.feature_extractor.conv_layers] + list(model.encoder.layers)
    handles = [m.register_forward_pre_hook(lambda *_: interrupt()) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def embed_track(model: Wav2Vec2Encoder, track: np.ndarray, fps: float, what: str = "audio",
                interrupt: Callable[[], None] | None = None) -> torch.Tensor:
    """One 16 kHz track [N] (loudness-normalised) -> [int(N/16000*fps), num_layers, hidden] float32 CPU.
    interrupt(): raises to stop (called throughout the encoder)."""
    seq_len = frame_count(track.shape[-1], fps)
    receptive = model.receptive_field
    if seq_len < 1 or track.shape[-1] < receptive:
        need = max(receptive / SAMPLE_RATE, 1.0 / fps)
        raise ValueError(f"{what}: {track.shape[-1] / SAMPLE_RATE:.3f} s of audio is too short; at least "
                         f"{need:.3f} s is needed for one video frame at {fps:g} fps.")
    values = normalize_input(track) if model.normalize_input else track.astype(np.float32)
    param = next(model.parameters())
    x = torch.from_numpy(values)[None].to(device=param.device, dtype=param.dtype)
    with _full_fp32(param.device), _interruptible(model, interrupt):
        return model(x, seq_len)[0].float().cpu()


@contextmanager
def _full_fp32(device: torch.device):
    """On CUDA, keep fp32 convolutions and matmuls in full fp32 (no TF32), like the official CPU run."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@dataclass
class AudioReport:
    """What the node shows: per-input measured loudness (LUFS; -inf for silence) and the result."""

    loudness_lufs: list[float]
    duration_s: float
    num_frames: int
    rows: int

    def text(self) -> str:
        """Each input's loudness and what was done with it (silence is left as it is, never "-> -23")."""
        who = (lambda i: f"speaker {i + 1} ") if len(self.loudness_lufs) > 1 else (lambda i: "")
        parts = [f"{who(i)}silent, left unchanged (nothing to normalise)" if abs(v) > 100
                 else f"{who(i)}{v:.1f} LUFS -> {TARGET_LUFS:g} LUFS" for i, v in enumerate(self.loudness_lufs)]
        return (f"{self.duration_s:.2f} s -> {self.num_frames} frames ({self.rows} embedding rows); "
                f"loudness: {'; '.join(parts)}")


def crop(track_len: int, start_s: float, end_s: float) -> slice:
    """Sample slice for [start_s, end_s) of a 16 kHz timeline; end_s <= 0 means to the end."""
    if start_s < 0:
        raise ValueError(f"start_time must be >= 0, got {start_s}.")
    start = int(round(start_s * SAMPLE_RATE))
    end = track_len if end_s <= 0 else min(track_len, int(round(end_s * SAMPLE_RATE)))
    if start >= end:
        raise ValueError(f"start_time {start_s:g} s / end_time {end_s:g} s leave no audio (the audio is "
                         f"{track_len / SAMPLE_RATE:.2f} s long); set start_time below end_time and the audio length.")
    return slice(start, end)


def speech_tracks(audios: list[tuple[object, int]], mode: str = "add", start_s: float = 0.0,
                  end_s: float = 0.0, interrupt: Callable[[], None] | None = None
                  ) -> tuple[list[np.ndarray], list[float], slice, list[int]]:
    """What wav2vec2 hears: 1 or 2 (waveform, sample_rate) inputs -> (cropped 16 kHz speaker tracks
    (float64, equal length), measured loudness per input, the crop on the combined 16 kHz timeline,
    each input's 16 kHz length before combining).

    Each input is down-mixed, resampled and loudness-normalised on its own (as the official code
    does per file); two inputs are combined with ``mode`` ('add' sequential / 'para' simultaneous).
    The crop [start_s, end_s) then applies to the combined timeline, so loudness does not depend on it.
    interrupt(): raises to stop; called before each input's preparation.
    """
    tracks, loudness = [], []
    for i, (waveform, rate) in enumerate(audios):
        what = f"speaker {i + 1} audio"
        if interrupt is not None:
            interrupt()
        track, lufs = loudness_normalize(to_mono_16k(waveform, rate, what), what=what)
        tracks.append(track)
        loudness.append(lufs)
    lengths = [t.shape[-1] for t in tracks]
    if len(tracks) == 2:
        tracks = list(combine_speakers(tracks[0], tracks[1], mode))
    window = crop(tracks[0].shape[-1], start_s, end_s)
    return [t[window] for t in tracks], loudness, window, lengths


def compute_audio_embeds(model: Wav2Vec2Encoder, audios: list[tuple[object, int]], *, mode: str = "add",
                         fps: float = 25.0, start_s: float = 0.0, end_s: float = 0.0,
                         soundtrack: tuple[object, int] | None = None,
                         interrupt: Callable[[], None] | None = None) -> tuple[AudioEmbeds, AudioReport]:
    """1 or 2 (waveform, sample_rate) speech inputs -> (AudioEmbeds, report).

    The embeddings come from ``speech_tracks``. The video's sound (AudioEmbeds.waveform) is the original
    input(s) at full quality (sound.speakers_sound), or ``soundtrack`` (waveform, sample_rate) when the
    speech is a processed copy of it (e.g. separated vocals); either way cropped like the embeddings.
    interrupt(): raises to stop; called between the stages and throughout the encoder (the node passes
    the host's cancel check).
    """
    if not 1 <= len(audios) <= 2:
        raise ValueError(f"InfiniteTalk takes 1 or 2 speakers, got {len(audios)} audio inputs.")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}.")
    tracks, loudness, window, lengths = speech_tracks(audios, mode, start_s, end_s, interrupt)
    if interrupt is not None:
        interrupt()
    speakers = [embed_track(model, t, fps, f"speaker {i + 1} audio", interrupt) for i, t in enumerate(tracks)]
    if soundtrack is None:
        sound, rate = speakers_sound(audios, lengths, mode)
    else:
        sound, rate = as_channels(*soundtrack, what="soundtrack")
    duration = tracks[0].shape[-1] / SAMPLE_RATE
    embeds = AudioEmbeds(speakers=speakers, fps=float(fps), duration_s=duration, num_frames=round(duration * fps),
                         waveform=crop_sound(sound, rate, window), sample_rate=rate)
    return embeds, AudioReport(loudness, duration, embeds.num_frames, speakers[0].shape[0])
