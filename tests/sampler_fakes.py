"""Small deterministic stand-ins for the sampler tests: a DiT-shaped velocity model and audio embeddings."""
from __future__ import annotations

import torch

from infinitetalk_lipsync.pipeline.audio.embeds import AudioEmbeds


class FakeDiT(torch.nn.Module):
    """Follows the InfiniteTalkDiT call contract; every input moves the output so that branches differ.

    v = 0.5 x - 0.3 y_latent + 0.01 t/1000 + c_text + audio_scale (c_audio(per frame) + 0.05 speakers) + c_clip
    (+ mask term); records calls. audio: [B, n_spk, F, 5, L, C] or a list of B [n_spk_b, F, 5, L, C]."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, context, clip_fea, y, audio, speaker_masks=None, audio_scale=1.0):
        self.calls.append(x.shape[0])
        b, _, frames, h, w = x.shape
        text = context.mean(dim=(1, 2)).view(b, 1, 1, 1, 1)
        rows = list(audio) if isinstance(audio, (list, tuple)) else list(audio.unbind(0))
        sound = torch.stack([r.mean(dim=(0, 2, 3, 4)) + 0.05 * r.shape[0] for r in rows]) * audio_scale  # [B, F]
        per_latent = torch.cat([sound[:, :1], sound[:, 1:].reshape(b, -1, 4).mean(-1)], dim=1)  # [B, T]
        image = clip_fea.mean(dim=(1, 2)).view(b, 1, 1, 1, 1)
        out = 0.5 * x - 0.3 * y[:, 4:] + 0.01 * (t / 1000).view(b, 1, 1, 1, 1) + text + image
        out = out + per_latent.view(b, 1, frames, 1, 1)
        if speaker_masks is not None:
            out = out + 0.1 * speaker_masks[0].view(1, 1, 1, h, w)
        return out.float()


def audio_embeds(lengths, fps=25.0, sample_rate=16000, seed=0, layers=2, dim=16):
    """The audio node's AudioEmbeds: speakers [L,layers,dim] with per-row distinct values, waveform of the duration."""
    gen = torch.Generator().manual_seed(seed)
    speakers = [torch.randn(n, layers, dim, generator=gen) * 0.1 + torch.arange(n).view(n, 1, 1) * 0.01
                for n in lengths]
    n = max(lengths)
    duration = n / fps
    waveform = torch.randn(1, int(round(duration * sample_rate)), generator=gen)
    return AudioEmbeds(speakers=speakers, fps=fps, duration_s=duration, num_frames=n, waveform=waveform,
                       sample_rate=sample_rate)


def video(frames, h=16, w=16, seed=0):
    """[frames,h,w,3] 0..1 with a per-frame colour ramp so frame lookups are checkable."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, h, w, 3, generator=gen) * 0.5
    ramp = torch.linspace(0, 0.5, frames).view(frames, 1, 1, 1)
    return (base + ramp).clamp(0, 1)


class Stop(Exception):
    """What ``stopper`` raises: a render interrupted as Cancel would."""


def stopper(after_steps: int):
    """Callbacks whose interrupt check raises ``Stop`` after ``after_steps`` calls (a Cancel mid-render)."""
    from infinitetalk_lipsync.pipeline.sampler.loop import Callbacks
    count = [0]

    def interrupt():
        count[0] += 1
        if count[0] > after_steps:
            raise Stop()
    return Callbacks(interrupt=interrupt)
