"""Seconds per window of the sampler: one 480p window (81 frames, 640x640 -> latent 16x21x80x80), the 14B
InfiniteTalk DiT with random bf16 weights, 4 steps with audio CFG only (cfg 1, audio_cfg 2: 2 branches,
8 forwards), run through the real loop (pipeline.sampler.loop.sample) with the tiny codec (real VAE cost
excluded; the tiny codec runs on the GPU and costs milliseconds). Measures batched branches (B=2, one
forward per step) against sequential branches (B=1 twice).

    python bench/sampler_window.py            # H100, ~2-4 min
    python bench/sampler_window.py --smoke    # tiny shapes on CPU, same code path
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline.audio.embeds import AudioEmbeds  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from codec_standins import TinyClip, TinyCodec  # noqa: E402
from pipeline.dit import WAN_I2V_14B, DiTConfig, InfiniteTalkDiT  # noqa: E402
from pipeline.sampler.loop import Job, Settings, sample  # noqa: E402
from pipeline.sampler.source import Source  # noqa: E402


def build_model(cfg: DiTConfig, device: torch.device, dtype: torch.dtype, attention: str) -> InfiniteTalkDiT:
    """Random weights created directly on the device, layer by layer (never a full fp32 copy)."""
    with torch.device("meta"):
        model = InfiniteTalkDiT(cfg, attention=attention)
    model = model.to(dtype).to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=gen)
    return model.eval()


def make_job(frames: int, size: int, steps: int, batched: bool, text_len: int, device: torch.device) -> Job:
    n = frames  # exactly one window of audio
    audio = AudioEmbeds(speakers=[torch.randn(n, 12, 768) * 0.1], fps=25.0, duration_s=n / 25.0, num_frames=n,
                        waveform=torch.zeros(1, int(n / 25.0 * 16000)), sample_rate=16000)
    source = Source(torch.rand(1, size, size, 3, device=device), 25.0, 25.0, size, size)  # tiny codec runs there too
    settings = Settings(steps=steps, shift=7.0, cfg=1.0, audio_cfg=2.0, window=frames, motion=9 if frames > 9 else 1,
                        batch_branches=batched, colour_strength=0.0)
    return Job(context=torch.randn(text_len, 4096) * 0.1, context_null=torch.randn(text_len, 4096) * 0.1, audio=audio,
               source=source, settings=settings)


def time_window(model, job: Job, device: torch.device, repeats: int) -> list[float]:
    codec, clip = TinyCodec(), TinyClip()
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            for _result in sample(model, codec, clip, job, device=device):
                pass
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model and shapes on CPU (same code path)")
    parser.add_argument("--attention", default="sdpa", help="DiT attention backend (default sdpa)")
    parser.add_argument("--repeats", type=int, default=2, help="timed windows per mode after one warm-up window")
    args = parser.parse_args()

    if args.smoke:
        cfg = dataclasses.replace(WAN_I2V_14B, dim=64, ffn_dim=128, num_heads=4, num_layers=2, intermediate_dim=32,
                                  output_dim=64)
        device, dtype, frames, size, text_len = torch.device("cpu"), torch.float32, 9, 32, 16
    else:
        if not torch.cuda.is_available():
            sys.exit("No CUDA device: run on the H100, or pass --smoke.")
        cfg, device, dtype, frames, size, text_len = WAN_I2V_14B, torch.device("cuda"), torch.bfloat16, 81, 640, 512
    steps = 4
    t0 = time.perf_counter()
    model = build_model(cfg, device, dtype, args.attention)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e9:.2f} B params {dtype} on {device}, attention {model.attention_backend}; "
          f"built in {time.perf_counter() - t0:.1f} s")
    print(f"window: {frames} frames {size}x{size} -> latent [16, {(frames - 1) // 4 + 1}, {size // 8}, {size // 8}], "
          f"{steps} steps, cfg 1 / audio_cfg 2 -> {2 * steps} forwards")
    results = {}
    for batched in (True, False):
        job = make_job(frames, size, steps, batched, text_len, device)
        time_window(model, job, device, 1)  # warm-up (kernels, allocator)
        times = time_window(model, job, device, args.repeats)
        best = min(times)
        results[batched] = best
        mem = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""
        print(f"{'batched branches (B=2)   ' if batched else 'sequential branches (B=1)'}: "
              f"{best:.2f} s/window (runs: {', '.join(f'{t:.2f}' for t in times)}), "
              f"{best / (2 * steps):.3f} s per forward-equivalent{mem}")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
    print(f"speed-up of batching: {results[False] / results[True]:.2f}x")


if __name__ == "__main__":
    main()
