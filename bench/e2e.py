"""End to end on one GPU: the 14B DiT (random weights) + the real-size core Wan 2.1 VAE (random weights)
through the real window loop (``pipeline.sampler.loop.sample``), with a breakdown and minutes of GPU per
minute of 480p video.

    python bench/e2e.py --comfyui /path/to/ComfyUI                 # fastest path: fp8 + fa3_fp8 + compile
    python bench/e2e.py --comfyui /path/to/ComfyUI --precision bf16 --attention flash_attn
    python bench/e2e.py --smoke --comfyui /path/to/ComfyUI         # tiny DiT + tiny VAE config on CPU

Runs (832x480, 25 fps, 1 speaker):
  * the 10 s clip: I2V, 250 frames = 4 windows, 4 steps, cfg 1 + audio_cfg 2 (2 calls per step: 32 forwards);
  * "faster iteration" (lightx2v): V2V, 4 steps, denoise 0.4 (2 steps run), cfg 1, audio_cfg 2.5, 2 windows;
  * "maximum crispness": V2V, 40 steps, denoise 0.4 (16 run), cfg 5.5, audio_cfg 5 (3 calls per step), 1 window;
  * "faster iteration" again through ``render`` (the mp4 written as the node writes it; writing overlaps the
    next window's computing), with one window's encode timed alone;
  * the same with MagCache at its default threshold. MagCache decides from the published magnitude ratios and
    the step index alone, so the steps it skips here are the steps it skips with the trained weights; what
    skipping does to the picture needs the trained weights to judge. (TeaCache and EasyCache decide from the
    model's own signals, which random weights make meaningless: not measured.)
A minute of video is 1500 frames = 21 windows; each recipe's minutes per minute = 21 x its measured
seconds per later window / 60 (window 0's only extra is nothing: all windows do the same work in V2V).

The VAE is ComfyUI's own ``comfy/ldm/wan/vae.py`` read from ``--comfyui``; when ComfyUI's package does
not import (no ComfyUI environment), the file's two ComfyUI dependencies (conv ops, VAE attention) are
provided as the plain torch modules they reduce to for bf16 weights on the GPU. The codec mimics the core
VAE object: frames in from the CPU, latents and decoded frames back to the CPU (``nodes/adapters.py``).
CLIP vision is the tiny stand-in (tens of ms on a GPU; excluded). Audio features are random.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from codec_standins import TinyClip  # noqa: E402
from dit_forward import SMOKE, build_model, sync  # noqa: E402
from pipeline.audio.embeds import AudioEmbeds  # noqa: E402
from pipeline.codec import denormalize_latent, normalize_latent  # noqa: E402
from pipeline.dit import WAN_I2V_14B  # noqa: E402
from pipeline.sampler import step_cache  # noqa: E402
from pipeline.sampler.loop import Job, Settings, sample  # noqa: E402
from pipeline.sampler.source import Source  # noqa: E402

WAN21_VAE = dict(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True], dropout=0.0)
WINDOWS_PER_MINUTE = 21  # 1500 frames at 25 fps: 1 + ceil((1500 - 81) / 72)


# -- the core VAE --------------------------------------------------------------------------------
def _stub_comfy():
    """The two ComfyUI names vae.py imports, as what they are for bf16 weights already on the GPU."""
    def pytorch_attention(q, k, v):  # comfy's: one head over the channels, tokens = pixels
        shape, (b, c) = q.shape, q.shape[:2]
        q, k, v = (t.view(b, 1, c, -1).transpose(2, 3).contiguous() for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v).transpose(2, 3).reshape(shape)

    ops = types.ModuleType("comfy.ops")
    ops.disable_weight_init = types.SimpleNamespace(Conv2d=nn.Conv2d, Conv3d=nn.Conv3d, Linear=nn.Linear,
                                                    GroupNorm=nn.GroupNorm, LayerNorm=nn.LayerNorm)
    model = types.ModuleType("comfy.ldm.modules.diffusionmodules.model")
    model.vae_attention = lambda: pytorch_attention
    names = ["comfy", "comfy.ldm", "comfy.ldm.modules", "comfy.ldm.modules.diffusionmodules"]
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["comfy.ops"] = ops
    sys.modules["comfy"].ops = ops
    sys.modules["comfy.ldm.modules.diffusionmodules.model"] = model


def wan_vae_class(comfyui: Path):
    path = comfyui / "comfy" / "ldm" / "wan" / "vae.py"
    if not path.is_file():
        sys.exit(f"--comfyui: {path} not found (give the ComfyUI folder that holds comfy/ldm/wan/vae.py)")
    try:
        sys.path.insert(0, str(comfyui))
        from comfy.ldm.wan.vae import WanVAE  # the real thing, inside a ComfyUI environment
        return WanVAE, "ComfyUI import"
    except Exception:
        for name in [n for n in sys.modules if n == "comfy" or n.startswith("comfy.")]:
            del sys.modules[name]
        sys.path.remove(str(comfyui))
    _stub_comfy()
    spec = importlib.util.spec_from_file_location("wan_core_vae", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WanVAE, "vae.py with torch stand-ins for comfy.ops / vae_attention"


def build_vae(cls, config, device, dtype):
    vae = cls(**config).to(device=device, dtype=dtype).eval().requires_grad_(False)
    gen = torch.Generator(device=device).manual_seed(5)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, (p[0].numel()) ** -0.5, generator=gen)
    return vae


def to_channels_last(vae):
    """Conv3d weights in channels_last_3d (``Module.to(memory_format=...)`` refuses the 4-D/2-D weights)."""
    for module in vae.modules():
        if isinstance(module, nn.Conv3d):
            module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
    return vae


class CoreVAECodec:
    """The sampler's codec over a core WanVAE, as ComfyUI's VAE object behaves: CPU in, CPU out.
    Accumulates GPU-synchronised seconds of encode/decode."""

    def __init__(self, vae, device, dtype, channels_last: bool = False):
        self.vae, self.device, self.dtype = vae, device, dtype
        self.channels_last = channels_last
        self.seconds = {"encode": 0.0, "decode": 0.0}
        self.calls = {"encode": 0, "decode": 0}

    def _fmt(self, x):
        return x.to(memory_format=torch.channels_last_3d) if self.channels_last else x

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        sync(self.device)
        start = time.perf_counter()
        with torch.inference_mode():
            x = (frames.to(self.device, self.dtype).permute(3, 0, 1, 2)[None] * 2 - 1)
            mu = self.vae.encode(self._fmt(x.contiguous()))
            out = normalize_latent(mu[0].float()).cpu()
        sync(self.device)
        self.seconds["encode"] += time.perf_counter() - start
        self.calls["encode"] += 1
        return out

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        sync(self.device)
        start = time.perf_counter()
        with torch.inference_mode():
            z = denormalize_latent(latent.to(self.device).float())[None].to(self.dtype)
            out = self.vae.decode(self._fmt(z.contiguous()))
            out = ((out[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0).cpu()
        sync(self.device)
        self.seconds["decode"] += time.perf_counter() - start
        self.calls["decode"] += 1
        return out


def vae_formats(cls, config, device, dtype, size, frames):
    """Encode 81 frames / decode 21 latents: default layout vs channels_last_3d (time and difference)."""
    h, w = size
    gen = torch.Generator(device="cpu").manual_seed(6)
    video = torch.rand(frames, h, w, 3, generator=gen)
    vae = build_vae(cls, config, device, dtype)
    results = {}
    for channels_last in (False, True):
        if channels_last:
            vae = to_channels_last(vae)
        codec = CoreVAECodec(vae, device, dtype, channels_last)
        latent = codec.encode(video)  # warm-up
        pixels = codec.decode(latent)
        codec.seconds = {"encode": 0.0, "decode": 0.0}
        latent = codec.encode(video)
        pixels = codec.decode(latent)
        results[channels_last] = (dict(codec.seconds), latent, pixels)
    (a, la, pa), (b, lb, pb) = results[False], results[True]
    diff = lambda x, y: float((x - y).norm() / y.norm())  # noqa: E731
    print(f"VAE {w}x{h}x{frames} {dtype}: encode {a['encode']:.2f} s / decode {a['decode']:.2f} s (default layout); "
          f"channels_last_3d {b['encode']:.2f} s / {b['decode']:.2f} s (latent diff {diff(lb, la):.1e}, "
          f"pixel diff {diff(pb, pa):.1e})", flush=True)
    del vae


# -- the DiT -------------------------------------------------------------------------------------
class ForwardTimer:
    """Hooks on the DiT: GPU-synchronised seconds and count of its forwards."""

    def __init__(self, model, device):
        self.device, self.seconds, self.count, self._start = device, 0.0, 0, 0.0
        model.register_forward_pre_hook(self._pre)
        model.register_forward_hook(self._post)

    def _pre(self, module, args):
        sync(self.device)
        self._start = time.perf_counter()

    def _post(self, module, args, out):
        sync(self.device)
        self.seconds += time.perf_counter() - self._start
        self.count += 1


def make_job(frames_src: torch.Tensor, n_frames: int, settings: Settings, size, text_len: int,
             text_dim: int = 4096) -> Job:
    h, w = size
    gen = torch.Generator().manual_seed(7)
    audio = AudioEmbeds(speakers=[torch.randn(n_frames, 12, 768, generator=gen) * 0.1], fps=25.0,
                        duration_s=n_frames / 25.0, num_frames=n_frames,
                        waveform=torch.zeros(1, int(n_frames / 25.0 * 16000)), sample_rate=16000)
    return Job(context=torch.randn(text_len, text_dim, generator=gen) * 0.1,
               context_null=torch.randn(text_len, text_dim, generator=gen) * 0.1, audio=audio,
               source=Source(frames_src, 25.0, 25.0, h, w), settings=settings)


def run_job(name, model, codec, job, device, timer):
    codec.seconds = {"encode": 0.0, "decode": 0.0}
    timer.seconds, timer.count = 0.0, 0
    windows = []
    sync(device)
    start = last = time.perf_counter()
    with torch.inference_mode():
        for result in sample(model, codec, TinyClip(), job, device=device):
            now = time.perf_counter()
            windows.append(now - last)
            last = now
            del result
    total = time.perf_counter() - start
    vae = codec.seconds["encode"] + codec.seconds["decode"]
    other = total - timer.seconds - vae
    print(f"{name}: {total:.1f} s for {len(windows)} windows ({', '.join(f'{t:.1f}' for t in windows)} s) | "
          f"DiT {timer.seconds:.1f} s ({timer.count} forwards, {timer.seconds / max(1, timer.count):.3f} s each) | "
          f"VAE {vae:.1f} s (encode {codec.seconds['encode']:.1f}, decode {codec.seconds['decode']:.1f}) | "
          f"other {other:.1f} s", flush=True)
    return total, windows


def run_written(name, model, codec, job, device, size):
    """``job`` through ``render`` as the sampler node runs it: each window's frames H.264-encoded to disk on the
    writer thread while the next window computes. Also times one window's segment encoded alone (its frames)."""
    import tempfile

    from pipeline.sampler.resume import Checkpoints
    from pipeline.video.render import render
    from pipeline.video.writer import encode_segment
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        out = render(model, codec, TinyClip(), job, f"{tmp}/out.mp4", Checkpoints(tmp, "ck"), keep_frames=True,
                     device=device)
        start = time.perf_counter()
        encode_segment(f"{tmp}/alone.mp4", out.frames[-72:], 25.0)
        alone = time.perf_counter() - start
    windows = out.seconds_per_window
    print(f"{name}: {sum(windows):.1f} s for {len(windows)} windows ({', '.join(f'{t:.1f}' for t in windows)} s), "
          f"writing the {size[1]}x{size[0]} mp4; one window's segment encoded alone: {alone:.2f} s", flush=True)
    return windows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", type=Path, help="ComfyUI folder (its comfy/ldm/wan/vae.py is used)")
    parser.add_argument("--smoke", action="store_true", help="tiny DiT and VAE on CPU (checks the code path)")
    parser.add_argument("--precision", default="fp8", choices=("fp8", "bf16"),
                        help="fp8: block Linears in e4m3 with fp8 matmul (default); bf16: as built")
    parser.add_argument("--attention", default="fa3_fp8")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--channels-last", action="store_true", help="run the VAE in channels_last_3d (faster on "
                        "the H100 but not bit-identical to core's VAE, which the pack uses as it is)")
    parser.add_argument("--skip", default="", help="comma list of clip,fast,fast_written,crisp,crisp_magcache to skip")
    args = parser.parse_args()

    if args.smoke:
        cfg, device, dtype, size, text_len = SMOKE, torch.device("cpu"), torch.float32, (32, 48), 16
        vae_config = dict(WAN21_VAE, dim=8)
        clip_frames, window = 45, 21
        args.no_compile = True
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --smoke on a CPU machine")
        cfg, device, dtype, size, text_len = WAN_I2V_14B, torch.device("cuda"), torch.bfloat16, (480, 832), 512
        vae_config, clip_frames, window = WAN21_VAE, 250, 81
        torch.backends.cuda.matmul.allow_tf32 = False
    skip = set(filter(None, args.skip.split(",")))
    if args.comfyui is None:
        sys.exit("--comfyui PATH is needed (the core Wan VAE is read from it)")

    vae_cls, how = wan_vae_class(args.comfyui)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {gpu}, torch {torch.__version__}; core Wan VAE from {args.comfyui} ({how})", flush=True)
    vae_formats(vae_cls, vae_config, device, dtype, size, window)
    channels_last = args.channels_last

    start = time.perf_counter()
    model = build_model(cfg, device, dtype, "sdpa")
    if device.type == "cuda":  # baseline in the same run: the pack's previous default (bf16, SDPA, eager)
        from dit_forward import make_inputs, time_forward
        inputs, _, _ = make_inputs(cfg, size[1], size[0], window, 1, device, dtype)
        times, _, _ = time_forward(model, inputs, device, 1)
        del inputs
        print(f"baseline forward (bf16, sdpa, eager, 832x480x81): {times[0]:.3f} s", flush=True)
    model.set_attention_backend(args.attention)
    timer = ForwardTimer(model, device)
    if args.precision == "fp8":
        from loading import convert_fp8
        convert_fp8(model, dtype, scaled_mm=True)
    if not args.no_compile:
        model.compile_blocks(device)
    vae = build_vae(vae_cls, vae_config, device, dtype)
    if channels_last:
        vae = to_channels_last(vae)
    codec = CoreVAECodec(vae, device, dtype, channels_last)
    print(f"DiT {args.precision}, attention {model.attention_backend}, compile {not args.no_compile}; VAE bf16"
          f"{', channels_last_3d' if channels_last else ''}; built in {time.perf_counter() - start:.1f} s", flush=True)

    gen = torch.Generator().manual_seed(8)
    image = torch.rand(1, *size, 3, generator=gen)
    video = torch.rand(window + (window - 9), *size, 3, generator=gen)  # two windows of source
    # Warm-up (kernels, compile): one window of the fast recipe, not counted.
    run_job("warm-up (not counted)", model, codec, make_job(video[:window], window, Settings(
        steps=4, shift=11.0, cfg=1.0, audio_cfg=2.5, denoise=0.4, window=window, colour_strength=1.0),
        size, text_len, cfg.text_dim), device, timer)
    if args.precision == "fp8":
        from pipeline.loading import quant_linear
        print(f"fp8 matmul as this build runs it: {quant_linear._MM}", flush=True)
    results = {}
    if "clip" not in skip:
        s = Settings(steps=4, shift=11.0, cfg=1.0, audio_cfg=2.0, window=window, colour_strength=1.0)
        total, windows = run_job(f"10 s clip (I2V, {clip_frames} frames)", model, codec,
                                 make_job(image, clip_frames, s, size, text_len, cfg.text_dim), device, timer)
        results["clip"] = total
        print(f"  -> {total / (clip_frames / 25.0):.1f} min of {gpu} per min of video (s per s)", flush=True)
    recipes = {"fast": ("faster iteration (4 steps, denoise 0.4, cfg 1, audio_cfg 2.5)",
                        Settings(steps=4, shift=11.0, cfg=1.0, audio_cfg=2.5, denoise=0.4, window=window), 2),
               "crisp": ("maximum crispness (40 steps, denoise 0.4, cfg 5.5, audio_cfg 5)",
                         Settings(steps=40, shift=7.0, cfg=5.5, audio_cfg=5.0, denoise=0.4, window=window), 1),
               "crisp_magcache": ("maximum crispness + MagCache (default threshold 0.12)",
                                  Settings(steps=40, shift=7.0, cfg=5.5, audio_cfg=5.0, denoise=0.4, window=window,
                                           step_cache="magcache"), 1)}
    for key, (label, s, n_windows) in recipes.items():
        if key in skip:
            continue
        frames = window + (n_windows - 1) * (window - 9)
        job = make_job(video[:frames], frames, s, size, text_len, cfg.text_dim)
        total, windows = run_job(f"recipe {label}, {n_windows} window(s)", model, codec, job, device, timer)
        per_window = windows[-1]
        print(f"  -> {per_window:.1f} s per window; {WINDOWS_PER_MINUTE * per_window / 60:.2f} min of "
              f"{gpu} per min of {size[1]}x{size[0]} video", flush=True)
        results[key] = WINDOWS_PER_MINUTE * per_window / 60
        if job.stats:
            print(f"  {step_cache.summary(job.stats)}", flush=True)
        if key == "fast" and "fast_written" not in skip:
            windows = run_written(f"recipe {label}, {n_windows} window(s), written to an mp4", model, codec,
                                  make_job(video[:frames], frames, s, size, text_len, cfg.text_dim), device, size)
            results["fast_written"] = WINDOWS_PER_MINUTE * windows[-1] / 60
    print("RESULTS", {k: round(v, 2) for k, v in results.items()})


if __name__ == "__main__":
    main()
