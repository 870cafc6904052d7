"""Run the guidance branches of one step through the DiT, as one batch or one call per branch.

Branch inputs (official order): ``cond`` (text, audio), ``drop_audio`` (text, zero audio),
``drop_text`` (negative text, audio), ``uncond`` (negative text, zero audio). The image condition
(CLIP tokens, ``y``) is never dropped. Zero audio is zero for EVERY speaker: the official code passes a
single zero speaker in the two-speaker case (which also switches its model to the one-speaker path);
we keep the speaker count so the no-audio branch differs from ``cond`` only by its audio.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_USES_TEXT = {"cond": True, "drop_audio": True, "drop_text": False, "uncond": False}
_USES_AUDIO = {"cond": True, "drop_audio": False, "drop_text": True, "uncond": False}


@dataclass
class WindowInputs:
    """Everything but the latent and timestep that one window feeds the model (batch 1, on the device).

    context/context_null: [1,L,4096]; clip_fea: [1,257*k,1280] (reference image, + face image if given); y: [1,20,T,h,w];
    audio: [1,n_speakers,F,5,12,768]; speaker_masks: [n_speakers+1,h,w] or None."""

    context: torch.Tensor
    context_null: torch.Tensor
    clip_fea: torch.Tensor
    y: torch.Tensor
    audio: torch.Tensor
    speaker_masks: torch.Tensor | None = None


def _pad_tokens(ctx: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad text tokens to ``length`` (the DiT zero-pads to 512 anyway, so this changes nothing)."""
    return F.pad(ctx, (0, 0, 0, length - ctx.shape[1])) if ctx.shape[1] < length else ctx


def predict(model, x: torch.Tensor, t: torch.Tensor, inputs: WindowInputs, branches: tuple[str, ...],
            batched: bool) -> dict[str, torch.Tensor]:
    """Velocity of every branch. x: [16,T,h,w] fp32; t: [1] fp32. Returns {branch: [16,T,h,w] fp32}.

    ``batched`` runs all branches as one forward of batch len(branches) (faster, more memory);
    otherwise one forward per branch. Both give the same result up to kernel rounding."""
    zero_audio = torch.zeros_like(inputs.audio)
    length = max(inputs.context.shape[1], inputs.context_null.shape[1])
    texts = [_pad_tokens(inputs.context if _USES_TEXT[b] else inputs.context_null, length) for b in branches]
    audios = [inputs.audio if _USES_AUDIO[b] else zero_audio for b in branches]
    if batched:
        n = len(branches)
        out = model(x[None].expand(n, *x.shape), t.expand(n), torch.cat(texts), inputs.clip_fea.expand(n, -1, -1),
                    inputs.y.expand(n, *inputs.y.shape[1:]), torch.cat(audios), speaker_masks=inputs.speaker_masks)
        return {b: out[k].float() for k, b in enumerate(branches)}
    return {b: model(x[None], t, text, inputs.clip_fea, inputs.y, audio, speaker_masks=inputs.speaker_masks)[0].float()
            for b, text, audio in zip(branches, texts, audios)}
