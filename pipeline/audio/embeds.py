"""The audio conditioning handed from the audio node to the sampler."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .sound import trim_to_frames


@dataclass
class AudioEmbeds:
    """Per-speaker wav2vec2 features at the video frame rate, plus the audio they came from.

    speakers: 1 or 2 tensors [L, layers, hidden] (real model: [L, 12, 768]) float32 on CPU; row ``i``
        belongs to video frame ``i`` (L = int(duration_s * fps), as the official code).
    fps: video frame rate the rows are aligned to.
    duration_s: exact duration of the processed audio (samples / sample_rate).
    num_frames: round(duration_s * fps), the video length that covers the audio.
    waveform: [C, T] float32 on CPU, the sound of the video: the user's original audio (or the
        soundtrack given instead) at its own rate and channels, levels untouched, two speakers laid out
        as their embeddings (add/para), cropped like them. Read it through ``output_sound``.
    sample_rate: sample rate of ``waveform`` (the input's own, e.g. 44100).
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

    def output_sound(self, num_frames: int | None = None) -> tuple[torch.Tensor, int]:
        """The sound for ``num_frames`` video frames (default: ``self.num_frames``) at ``self.fps``:
        ([C, round(num_frames * sample_rate / fps)] float32, sample_rate). Everything that outputs or
        muxes the video's audio asks here."""
        frames = self.num_frames if num_frames is None else int(num_frames)
        return trim_to_frames(self.waveform, int(self.sample_rate), float(self.fps), frames), int(self.sample_rate)
