"""Run the guidance branches of one step through the DiT, as one batch or one call per branch.

Branch inputs (official order): ``cond`` (text, audio), ``drop_audio`` (text, zero audio),
``drop_text`` (negative text, audio), ``uncond`` (negative text, zero audio). The image condition
(CLIP tokens, ``y``) is never dropped.

Zero audio with two speakers (``null_audio``): the official code passes ONE zero speaker
(``zeros_like(audio)[-1:]``), which also switches its model to the one-speaker path (no L-RoPE, 32 audio
tokens instead of 64). That is what the released model's guidance was tuned with, so it is the default
(``NULL_AUDIO[0]``). ``NULL_AUDIO[1]`` keeps both speakers and silences them, so the no-audio branch differs
from ``cond`` only by its audio. One speaker: both are the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

NULL_AUDIO = ("one zero speaker (official)", "silence both speakers")
_USES_TEXT = {"cond": True, "drop_audio": True, "drop_text": False, "uncond": False}
_USES_AUDIO = {"cond": True, "drop_audio": False, "drop_text": True, "uncond": False}


@dataclass
class WindowInputs:
    """Everything but the latent and timestep that one window feeds the model (batch 1, on the device).

    context/context_null: [1,L,4096]; clip_fea: [1,257*k,1280] (reference image, + face image if given); y: [1,20,T,h,w];
    audio: [1,n_speakers,F,5,12,768]; speaker_masks: [n_speakers+1,h,w] or None;
    null_audio: one of NULL_AUDIO (what the no-audio branches feed with two speakers);
    audio_scale: weight of the audio cross-attention in every block (1 = the trained model)."""

    context: torch.Tensor
    context_null: torch.Tensor
    clip_fea: torch.Tensor
    y: torch.Tensor
    audio: torch.Tensor
    speaker_masks: torch.Tensor | None = None
    null_audio: str = NULL_AUDIO[0]
    audio_scale: float = 1.0

    def zero_audio(self) -> torch.Tensor:
        """The no-audio branches' audio: [1,1,F,...] (official, one zero speaker) or zeros like ``audio``."""
        if self.null_audio not in NULL_AUDIO:
            raise ValueError(f"null_audio '{self.null_audio}' is not one of {', '.join(NULL_AUDIO)}.")
        zero = torch.zeros_like(self.audio)
        return zero[:, -1:] if self.null_audio == NULL_AUDIO[0] else zero


def _pad_tokens(ctx: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad text tokens to ``length`` (the DiT zero-pads to 512 anyway, so this changes nothing)."""
    return F.pad(ctx, (0, 0, 0, length - ctx.shape[1])) if ctx.shape[1] < length else ctx


def predict(model, x: torch.Tensor, t: torch.Tensor, inputs: WindowInputs, branches: tuple[str, ...],
            batched: bool) -> dict[str, torch.Tensor]:
    """Velocity of every branch. x: [16,T,h,w] fp32; t: [1] fp32. Returns {branch: [16,T,h,w] fp32}.

    ``batched`` runs all branches as one forward of batch len(branches) (faster, more memory);
    otherwise one forward per branch. Both give the same result up to kernel rounding."""
    zero_audio = inputs.zero_audio()
    length = max(inputs.context.shape[1], inputs.context_null.shape[1])
    texts = [_pad_tokens(inputs.context if _USES_TEXT[b] else inputs.context_null, length) for b in branches]
    audios = [inputs.audio if _USES_AUDIO[b] else zero_audio for b in branches]
    kw = {"speaker_masks": inputs.speaker_masks}
    if inputs.audio_scale != 1.0:
        kw["audio_scale"] = inputs.audio_scale
    if batched:
        n = len(branches)
        # rows with different speaker counts (official null audio with 2 speakers) go as a list, one per row
        same = len({a.shape[1] for a in audios}) == 1
        audio = torch.cat(audios) if same else [a[0] for a in audios]
        out = model(x[None].expand(n, *x.shape), t.expand(n), torch.cat(texts), inputs.clip_fea.expand(n, -1, -1),
                    inputs.y.expand(n, *inputs.y.shape[1:]), audio, **kw)
        return {b: out[k].float() for k, b in enumerate(branches)}
    return {b: model(x[None], t, text, inputs.clip_fea, inputs.y, audio, **kw)[0].float()
            for b, text, audio in zip(branches, texts, audios)}
