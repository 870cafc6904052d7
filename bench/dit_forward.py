"""Time one InfiniteTalk DiT forward (one CFG branch) at 480p and 720p, 81 frames, on one GPU.

    python bench/dit_forward.py --suite              # every speed path: time + error vs the bf16 eager forward
    python bench/dit_forward.py                      # 14B, random bf16 weights, cuda, eager, --attention auto
    python bench/dit_forward.py --compile            # same, blocks under torch.compile
    python bench/dit_forward.py --attention sage     # or sdpa, flash_attn, fa3_fp8, int8 (fall back to SDPA if absent)
    python bench/dit_forward.py --smoke [--suite]    # tiny config on CPU, same code path

Prints seconds per forward (median of --runs after one warm-up, CUDA-synchronised), the fraction
of the bf16 roofline (FLOPs by perf-anchors.md §1.2 / 790 TFLOP/s), and peak memory. The suite
also prints each path's relative L2 error against the bf16 eager SDPA forward on the same inputs
and weights (fp8 weights: against the eager up-cast forward of the same fp8 weights), and one
self-attention call per back-end at the 480p shape (time, error against an fp32 reference on a
slice of the queries).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.dit import BACKENDS, WAN_I2V_14B, DiTConfig, InfiniteTalkDiT, count_parameters, fused  # noqa: E402

ROOFLINE_TFLOPS = 790.0
RESOLUTIONS = {"480p": (832, 480), "720p": (1280, 720)}
REFERENCE = "official as shipped 4.83 s (480p) / 16.71 s (720p); ComfyUI core without audio 3.22 s / 12.06 s"
SMOKE = DiTConfig(dim=128, ffn_dim=256, num_heads=4, num_layers=2, freq_dim=32, text_dim=32,
                  intermediate_dim=8, output_dim=32, context_tokens=4)


def forward_flops(cfg: DiTConfig, tokens: int, latent_frames: int, speakers: int = 1) -> float:
    """FLOPs of one forward (2 per MAC): token linears, context projections, attentions, x layers."""
    d, f, ctx = cfg.dim, cfg.ffn_dim, cfg.clip_tokens + cfg.text_len
    audio_tokens = cfg.context_tokens * speakers
    per_block = (2 * tokens * (8 * d * d + 2 * d * f)                       # self q,k,v,o; cross q,o; audio q,proj; FFN
                 + 2 * ctx * 2 * d * d + 2 * latent_frames * audio_tokens * cfg.output_dim * 2 * d  # k/v of context
                 + 4 * tokens * tokens * d                                  # self-attention
                 + 4 * tokens * ctx * d + 4 * tokens * audio_tokens * d)    # cross + audio attention
    return per_block * cfg.num_layers


def build_model(cfg: DiTConfig, device, dtype, attention: str) -> InfiniteTalkDiT:
    """Random weights made in place on ``device`` (nothing materialised on the host)."""
    with torch.device("meta"):
        model = InfiniteTalkDiT(cfg, attention=attention)
    model = model.to(dtype).to_empty(device=device).eval().requires_grad_(False)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("modulation"):
                p.normal_(0, cfg.dim ** -0.5, generator=gen)
            elif p.dim() >= 2:
                p.normal_(0, min(0.02, p[0].numel() ** -0.5), generator=gen)
            elif "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.normal_(0, 0.01, generator=gen)
    return model


def make_inputs(cfg: DiTConfig, width: int, height: int, frames: int, speakers: int, device, dtype):
    t_lat, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    gen = torch.Generator(device=device).manual_seed(1)
    mask = torch.zeros(1, 4, t_lat, h, w, device=device)
    mask[:, :, 0] = 1
    inputs = dict(
        x=torch.randn(1, cfg.out_dim, t_lat, h, w, device=device, generator=gen),
        t=torch.tensor([500.0], device=device),
        context=torch.randn(1, cfg.text_len, cfg.text_dim, device=device, generator=gen).to(dtype),
        clip_fea=torch.randn(1, cfg.clip_tokens, cfg.clip_dim, device=device, generator=gen).to(dtype),
        y=torch.cat([mask, torch.randn(1, cfg.in_dim - cfg.out_dim - 4, t_lat, h, w, device=device,
                                       generator=gen)], dim=1).to(dtype),
        audio=(0.5 * torch.randn(1, speakers, frames, cfg.audio_window, cfg.audio_layers, cfg.audio_channels,
                                 device=device, generator=gen)).to(dtype))
    if speakers == 2:
        masks = torch.zeros(3, h, w, device=device)
        masks[0, :, : w // 2], masks[1, :, w // 2:] = 1, 1
        masks[2] = 1 - masks[0] - masks[1]
        masks[2, : h // 4] = 1  # a background band on top
        masks[:2, : h // 4] = 0
        inputs["speaker_masks"] = masks
    tokens = t_lat * (h // 2) * (w // 2)
    return inputs, tokens, t_lat


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(model, inputs, device, runs: int) -> tuple[list[float], float, torch.Tensor]:
    """(seconds of each of ``runs`` forwards after one warm-up, the warm-up's seconds, the warm-up's output):
    the one timing rule of the DiT benches (CUDA-synchronised)."""
    times = []
    with torch.inference_mode():
        sync(device)
        warm = time.perf_counter()
        out = model(**inputs)
        sync(device)
        warm = time.perf_counter() - warm
        assert torch.isfinite(out).all(), "non-finite output"
        for _ in range(runs):
            start = time.perf_counter()
            model(**inputs)
            sync(device)
            times.append(time.perf_counter() - start)
    return times, warm, out


def check_block_numerics(model: InfiniteTalkDiT, device, speakers: int) -> None:
    """Sanity of this device's kernels: block 0 in the model's dtype vs an fp32 copy, on a small grid."""
    import copy

    from pipeline.dit.blocks import BlockInputs
    from pipeline.dit.rope import video_rope_table

    cfg, block = model.config, model.blocks[0]
    ref_block = copy.deepcopy(block).float()
    grid = (3, 8, 12)
    gen = torch.Generator(device=device).manual_seed(2)
    n = grid[0] * grid[1] * grid[2]
    x = torch.randn(1, n, cfg.dim, device=device, generator=gen)
    e0 = 0.1 * torch.randn(1, 6, cfg.dim, device=device, generator=gen)
    context = torch.randn(1, cfg.clip_tokens + cfg.text_len, cfg.dim, device=device, generator=gen)
    audio = torch.randn(1, grid[0], cfg.context_tokens * speakers, cfg.output_dim, device=device, generator=gen)
    masks = rows = None
    if speakers == 2:
        masks = torch.zeros(3, grid[1] * grid[2], device=device)
        masks.view(3, grid[1], grid[2])[0, :, : grid[2] // 2] = 1
        masks.view(3, grid[1], grid[2])[1, :, grid[2] // 2:] = 1
        masks[2, : grid[2]] = 1
        rows = torch.tensor([0], device=device)
    outs = []
    for blk, dtype in ((block, model.compute_dtype), (ref_block, torch.float32)):
        inputs = BlockInputs(rope=video_rope_table(grid, cfg.rope_pairs, device), context=context.to(dtype),
                             audio=audio.to(dtype), speaker_masks=None if masks is None else masks.to(dtype),
                             lrope_rows=rows, grid=grid, image_tokens=cfg.clip_tokens,
                             backend=model.attention_backend)
        with torch.inference_mode():
            outs.append(blk(x.to(dtype), e0, inputs).float())
    rel = ((outs[0] - outs[1]).norm() / outs[1].norm()).item()
    verdict = "ok" if rel < 3e-2 else "SUSPICIOUS (expected < 3e-2 for bf16 rounding)"
    print(f"block check ({speakers} speaker(s), {model.compute_dtype} vs fp32 copy, attention "
          f"{model.attention_backend}): relative error {rel:.2e} -> {verdict}", flush=True)
    del ref_block


def profile_forward(model, inputs, device, label: str, rows: int = 25):
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode(), profile(activities=activities) as prof:
        model(**inputs)
        sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"[{label}] profile of one forward (top {rows} by {key}):")
    print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=70), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU (checks the code path)")
    parser.add_argument("--res", default="480p,720p", help="comma list of 480p,720p")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--speakers", type=int, default=1, choices=(1, 2))
    parser.add_argument("--runs", type=int, default=3, help="timed forwards after one warm-up")
    parser.add_argument("--attention", default="auto", choices=BACKENDS)
    parser.add_argument("--suite", action="store_true", help="every speed path at --res, with errors (see above)")
    parser.add_argument("--attention-calls", action="store_true", help="only: one self-attention call per "
                        "back-end at the 480p shape (ms, error vs fp32 on 1024 queries)")
    parser.add_argument("--block-errors", action="store_true", help="only: one full-width block at the 480p "
                        "token count, each path vs the fp32 block")
    parser.add_argument("--swap", type=int, default=20, help="blocks_to_swap of the suite's block-swap rows")
    parser.add_argument("--compile", action="store_true", help="torch.compile every block (measured separately)")
    parser.add_argument("--no-triton", action="store_true", help="eager RMSNorm+RoPE instead of the fused Triton "
                        "kernel (A/B baseline)")
    parser.add_argument("--profile", action="store_true", help="after timing, profile one forward per resolution "
                        "and print the kernels that take the most device time")
    args = parser.parse_args()

    if args.smoke:
        cfg, device, dtype = SMOKE, torch.device("cpu"), torch.bfloat16  # the GPU dtype path
        sizes = {"smoke": (64, 48)}
        frames = 9
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --smoke on a CPU machine")
        cfg, device, dtype = WAN_I2V_14B, torch.device("cuda"), torch.bfloat16
        unknown = set(args.res.split(",")) - set(RESOLUTIONS)
        if unknown or (args.frames - 1) % 4:
            parser.error(f"--res takes {','.join(RESOLUTIONS)}; --frames must be 4n+1 (got {args.res}, {args.frames})")
        sizes = {r: RESOLUTIONS[r] for r in args.res.split(",")}
        frames = args.frames
        torch.backends.cuda.matmul.allow_tf32 = False

    fused.ENABLED = not args.no_triton
    if args.attention_calls:
        from speed_suite import attention_calls
        attention_calls(device, dtype, 32760 if not args.smoke else 64, cfg.num_heads, cfg.head_dim)
        return
    if args.block_errors:
        from speed_suite import block_errors
        block_errors(cfg, device, *((64, 48), 9) if args.smoke else ())
        return
    start = time.perf_counter()
    model = build_model(cfg, device, dtype, args.attention)
    sync(device)
    print(f"model: {count_parameters(model) / 1e9:.3f} B params, {dtype}, on {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), built in "
          f"{time.perf_counter() - start:.1f} s; attention={model.attention_backend}"
          f"{' (asked ' + args.attention + ')' if model.attention_backend != args.attention else ''}, "
          f"compile={args.compile}, fused RMSNorm+RoPE="
          f"{fused.ENABLED and fused.triton is not None and device.type == 'cuda'}, speakers={args.speakers}, "
          f"torch {torch.__version__}")
    check_block_numerics(model, device, args.speakers)
    if args.suite:
        from speed_suite import run_suite
        run_suite(model, cfg, sizes, frames, args, device, dtype)
        return
    if args.compile:
        # One static graph per resolution, shared by the 40 blocks (their weights are graph inputs).
        torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
        for block in model.blocks:
            block.compile(dynamic=False)
    if device.type == "cuda":
        print(f"weights on GPU: {torch.cuda.memory_allocated(device) / 2**30:.1f} GiB")
    print(f"reference (H100, perf-official.md): {REFERENCE}")

    for label, (width, height) in sizes.items():
        inputs, tokens, t_lat = make_inputs(cfg, width, height, frames, args.speakers, device, dtype)
        flops = forward_flops(cfg, tokens, t_lat, args.speakers)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        times, warm, _ = time_forward(model, inputs, device, args.runs)
        median = statistics.median(times)
        roofline = flops / (ROOFLINE_TFLOPS * 1e12)
        line = (f"[{label}] {width}x{height} x {frames} frames, tokens={tokens}: "
                f"{median:.3f} s/forward (median of {', '.join(f'{t:.3f}' for t in times)}; warm-up {warm:.1f} s) | "
                f"{flops / 1e15:.3f} PFLOP -> {flops / median / 1e12:.0f} TFLOP/s = "
                f"{roofline / median:.2f} of bf16 roofline ({roofline:.2f} s at {ROOFLINE_TFLOPS:.0f} TFLOP/s)")
        if device.type == "cuda":
            line += (f" | peak alloc {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB, "
                     f"reserved {torch.cuda.max_memory_reserved(device) / 2**30:.1f} GiB")
        print(line, flush=True)
        if args.profile:
            profile_forward(model, inputs, device, label)
        del inputs
    if fused._FAILED:
        print(f"fused RMSNorm+RoPE kernel was DISABLED: {fused._FAILED[0]}")


if __name__ == "__main__":
    main()
