"""The audio conditioning handed from the audio node to the sampler."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AudioEmbeds:
    """Per-speaker wav2vec2 features at the video frame rate, plus the audio they came from.

    speakers: 1 or 2 tensors [L, layers, hidden] (real model: [L, 12, 768]) float32 on CPU; row ``i``
        belongs to video frame ``i`` (L = int(duration_s * fps), as the official code).
    fps: video frame rate the rows are aligned to.
    duration_s: exact duration of the processed audio (samples / sample_rate).
    num_frames: round(duration_s * fps), the video length that covers the audio.
    waveform: [C, T] float32, the processed (mixed) audio to mux into the video.
    sample_rate: sample rate of ``waveform`` (16000).
    """

    speakers: list[torch.Tensor]
    fps: float
    duration_s: float
    num_frames: int
    waveform: torch.Tensor
    sample_rate: int

    def __post_init__(self):
        if not 1 <= len(self.speakers) <= 2:
            raise ValueError(f"AudioEmbeds takes 1 or 2 speakers, got {len(self.speakers)}.")
        lengths = {s.shape[0] for s in self.speakers}
        if len(lengths) != 1:
            raise ValueError(f"All speakers must have the same number of frames, got {sorted(lengths)}.")
