"""The Wan 2.1 VAE run causally in time chunks, with either chunk schedule ComfyUI has used (test helper).

- ``"1+4"``: the official one (Wan2.1 ``wan/modules/vae.py``, ComfyUI <= 0.8): encode frame 0, then 4 frames at a
  time; decode one latent frame at a time.
- ``"1+2"``: ComfyUI 0.38 (``comfy/ldm/wan/vae.py``): encode frame 0, then 2 frames at a time, a time-downsampling
  layer holding back a lone output frame until the next chunk pairs it (or the last chunk flushes it); decode latent
  0, then 2 latents at a time, splitting each time-upsampled activation into 2-frame pieces for the layers after it.

Every time convolution keeps the last 2 frames it saw (zeros before the start), so both schedules compute the same
causal convolutions; they differ only in how frames are batched (floating-point order). Weights: a Wan 2.1 VAE state
dict (ComfyUI/official key names), any ``dim``. Shapes: video [B,3,T,H,W] in -1..1, latent [B,16,t,h,w] raw
(un-normalised) means.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class _TimeConv:
    """A causal Conv3d over time (kernel kt, stride 1) streaming chunk by chunk: the last kt-1 input frames are kept."""

    def __init__(self, w, b, spatial_pad):
        self.w, self.b, self.pad, self.cache = w, b, spatial_pad, None

    def __call__(self, x):
        keep = self.w.shape[2] - 1
        if keep:
            past = self.cache if self.cache is not None else x.new_zeros(*x.shape[:2], 0, *x.shape[3:])
            full = torch.cat([x.new_zeros(*x.shape[:2], keep - past.shape[2], *x.shape[3:]), past, x], 2)
            self.cache = full[:, :, -keep:]
        else:
            full = x
        return F.conv3d(full, self.w, self.b, padding=(0, self.pad, self.pad))


def _rms(x, gamma):
    return F.normalize(x, dim=1) * x.shape[1] ** 0.5 * gamma


class _Residual:
    def __init__(self, sd, p):
        self.sd, self.p = sd, p
        self.c1 = _TimeConv(sd[p + "residual.2.weight"], sd[p + "residual.2.bias"], 1)
        self.c2 = _TimeConv(sd[p + "residual.6.weight"], sd[p + "residual.6.bias"], 1)
        self.short = (_TimeConv(sd[p + "shortcut.weight"], sd[p + "shortcut.bias"], 0)
                      if p + "shortcut.weight" in sd else None)

    def __call__(self, x):
        h = self.c1(F.silu(_rms(x, self.sd[self.p + "residual.0.gamma"])))
        h = self.c2(F.silu(_rms(h, self.sd[self.p + "residual.3.gamma"])))
        return h + (self.short(x) if self.short else x)


class _Attention:
    def __init__(self, sd, p):
        self.sd, self.p = sd, p

    def __call__(self, x):
        b, c, t, h, w = x.shape
        y = _rms(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), self.sd[self.p + "norm.gamma"])
        qkv = F.conv2d(y, self.sd[self.p + "to_qkv.weight"], self.sd[self.p + "to_qkv.bias"])
        q, k, v = qkv.reshape(b * t, 1, c * 3, h * w).permute(0, 1, 3, 2).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q, k, v).squeeze(1).permute(0, 2, 1).reshape(b * t, c, h, w)
        y = F.conv2d(y, self.sd[self.p + "proj.weight"], self.sd[self.p + "proj.bias"])
        return x + y.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


def _frames2d(x, fn):
    b, c, t, h, w = x.shape
    y = fn(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
    return y.reshape(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)


class _Down:
    """Spatial stride-2 conv; with ``time``, then a stride-2 time conv over (last frame of the previous chunk, chunk)
    — frame 0 passes alone. ``hold``: the 0.38 schedule's pairing of lone output frames."""

    def __init__(self, sd, p, time, hold):
        self.sd, self.p, self.time, self.hold = sd, p, time, hold
        self.last, self.held, self.started = None, None, False

    def __call__(self, x, final):
        x = _frames2d(x, lambda y: F.conv2d(F.pad(y, (0, 1, 0, 1)), self.sd[self.p + "resample.1.weight"],
                                            self.sd[self.p + "resample.1.bias"], stride=2))
        if not self.time:
            return x
        if not self.started:
            self.started, self.last = True, x[:, :, -1:]
            return x
        out = F.conv3d(torch.cat([self.last, x], 2), self.sd[self.p + "time_conv.weight"],
                       self.sd[self.p + "time_conv.bias"], stride=(2, 1, 1))
        self.last = x[:, :, -1:]
        if self.hold:
            if self.held is not None:
                out, self.held = torch.cat([self.held, out], 2), None
            if out.shape[2] == 1 and not final:
                self.held = out
                return None
        return out


class _Up:
    """With ``time``: frame 0 passes alone, later frames are doubled by a causal time conv (zeros before frame 1);
    then nearest-exact x2 and a 3x3 conv halving the channels."""

    def __init__(self, sd, p, time):
        self.sd, self.p = sd, p
        self.tconv = _TimeConv(sd[p + "time_conv.weight"], sd[p + "time_conv.bias"], 0) if time else None
        self.started = False

    def __call__(self, x):
        if self.tconv is not None:
            if not self.started:
                self.started = True
            else:
                b, c, t, h, w = x.shape
                y = self.tconv(x).reshape(b, 2, c, t, h, w)
                x = torch.stack((y[:, 0], y[:, 1]), 3).reshape(b, c, t * 2, h, w)
        return _frames2d(x, lambda y: F.conv2d(F.interpolate(y, scale_factor=2.0, mode="nearest-exact"),
                                               self.sd[self.p + "resample.1.weight"],
                                               self.sd[self.p + "resample.1.bias"], padding=1))


def _layers(sd, prefix, kind, hold):
    """The blocks of encoder.downsamples / decoder.upsamples in key order (residual, resample)."""
    blocks, i = [], 0
    while any(k.startswith(f"{prefix}.{i}.") for k in sd):
        p = f"{prefix}.{i}."
        if p + "residual.0.gamma" in sd:
            blocks.append(_Residual(sd, p))
        elif kind == "down":
            blocks.append(_Down(sd, p, p + "time_conv.weight" in sd, hold))
        else:
            blocks.append(_Up(sd, p, p + "time_conv.weight" in sd))
        i += 1
    return blocks


def encode(sd: dict, video: torch.Tensor, schedule: str) -> torch.Tensor:
    """[B,3,T,H,W] (T = 4n+1) -> raw latent means [B,16,n+1,H/8,W/8]."""
    step, hold = {"1+4": (4, False), "1+2": (2, True)}[schedule]
    conv_in = _TimeConv(sd["encoder.conv1.weight"], sd["encoder.conv1.bias"], 1)
    downs = _layers(sd, "encoder.downsamples", "down", hold)
    middle = [_Residual(sd, "encoder.middle.0."), _Attention(sd, "encoder.middle.1."), _Residual(sd, "encoder.middle.2.")]
    head = _TimeConv(sd["encoder.head.2.weight"], sd["encoder.head.2.bias"], 1)
    starts = [0] + list(range(1, video.shape[2], step))
    outs = []
    for n, s in enumerate(starts):
        x = conv_in(video[:, :, s:s + (1 if s == 0 else step)])
        for block in downs:
            x = block(x, final=n == len(starts) - 1) if isinstance(block, _Down) else block(x)
            if x is None:
                break
        if x is None:
            continue
        for block in middle:
            x = block(x)
        outs.append(head(F.silu(_rms(x, sd["encoder.head.0.gamma"]))))
    out = F.conv3d(torch.cat(outs, 2), sd["conv1.weight"], sd["conv1.bias"])
    return out[:, : out.shape[1] // 2]


def decode(sd: dict, latent: torch.Tensor, schedule: str) -> torch.Tensor:
    """Raw latent [B,16,t,h,w] -> video [B,3,4(t-1)+1,8h,8w] (not clamped)."""
    step = {"1+4": 1, "1+2": 2}[schedule]
    z = F.conv3d(latent, sd["conv2.weight"], sd["conv2.bias"])
    conv_in = _TimeConv(sd["decoder.conv1.weight"], sd["decoder.conv1.bias"], 1)
    middle = [_Residual(sd, "decoder.middle.0."), _Attention(sd, "decoder.middle.1."), _Residual(sd, "decoder.middle.2.")]
    ups = _layers(sd, "decoder.upsamples", "up", False)
    head = _TimeConv(sd["decoder.head.2.weight"], sd["decoder.head.2.bias"], 1)
    outs = []

    def run(x, i):  # layers i.. on x; after a time-doubling layer, 2-frame pieces (the 1+2 schedule)
        for j in range(i, len(ups)):
            x = ups[j](x)
            if schedule == "1+2" and isinstance(ups[j], _Up) and ups[j].tconv is not None and x.shape[2] > 2:
                for k in range(0, x.shape[2], 2):
                    run(x[:, :, k:k + 2], j + 1)
                return
        outs.append(head(F.silu(_rms(x, sd["decoder.head.0.gamma"]))))

    for s in [0] + list(range(1, z.shape[2], step)):
        x = conv_in(z[:, :, s:s + (1 if s == 0 else step)])
        for block in middle:
            x = block(x)
        run(x, 0)
    return torch.cat(outs, 2)
