"""Loader formats on the 14B DiT: seconds per 480p forward and peak VRAM for bf16, fp8 (up-cast and
fp8 matmul), GGUF Q8_0 / Q4_K, and bf16 with block swap 20/40 with and without overlap; plus GGUF
dequantisation throughput on the GPU and a bit-exactness check against gguf's numpy reference.

    python bench/loading.py            # H100: 14B shapes, random weights made on the GPU (< 8 min)
    python bench/loading.py --smoke    # tiny config on CPU, same code path

Weights are random (only shapes matter for speed): the bf16 model is built on the GPU, then its
block Linears are converted in place (fp8 from the bf16 values, GGUF as random valid blocks), so
the host never holds the model except the swapped blocks of the block-swap runs (pinned RAM).
Each figure is the median of --runs timed forwards after one warm-up (one CFG branch, 81 frames).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from dit_forward import SMOKE, build_model, make_inputs, sync, time_forward  # noqa: E402
from pipeline.dit import WAN_I2V_14B  # noqa: E402
from pipeline.loading import block_swap, dequant  # noqa: E402
from pipeline.loading.quant_linear import Fp8Linear, GGUFLinear  # noqa: E402

SCALE_OFFSETS = {dequant.Q2_K: (80, 82), dequant.Q3_K: (108,), dequant.Q4_K: (0, 2), dequant.Q5_K: (0, 2),
                 dequant.Q6_K: (208,), dequant.Q4_0: (0,), dequant.Q5_0: (0,), dequant.Q8_0: (0,),
                 dequant.Q4_1: (0, 2), dequant.Q5_1: (0, 2)}


def random_blocks(qtype: int, rows: int, cols: int, device, gen) -> torch.Tensor:
    """Random raw GGUF blocks with small valid fp16 scales: uint8 [rows, bytes_per_row] on ``device``."""
    _, block, size = dequant.TYPES[qtype]
    raw = torch.randint(0, 256, (rows * (cols // block), size), dtype=torch.uint8, device=device, generator=gen)
    for off in SCALE_OFFSETS[qtype]:
        scale = (torch.rand(raw.shape[0], device=device, generator=gen) * 0.02 - 0.01).to(torch.float16)
        raw[:, off:off + 2] = scale.view(torch.uint8).reshape(-1, 2)
    return raw.reshape(rows, -1)


def block_linears(model):
    """(parent, child name, module) for every Linear-like layer inside the blocks."""
    for parent in model.blocks.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Linear or isinstance(child, (Fp8Linear, GGUFLinear)):
                yield parent, name, child


def convert_fp8(model, dtype, scaled_mm: bool):
    for parent, name, lin in list(block_linears(model)):
        w = lin.weight.data
        scale = (w.abs().amax().float() / 448.0).clamp_min(1e-12)
        q = (w.float() / scale).to(torch.float8_e4m3fn)
        setattr(parent, name, Fp8Linear(q, scale, lin.bias.data, dtype, None, scaled_mm))
        del w, lin


def convert_gguf(model, dtype, qtype: int, device):
    gen = torch.Generator(device=device).manual_seed(qtype)
    block = dequant.TYPES[qtype][1]
    for parent, name, lin in list(block_linears(model)):
        if lin.in_features % block:  # only in the smoke config; a converter keeps such rows in F16
            continue
        raw = random_blocks(qtype, lin.out_features, lin.in_features, device, gen)
        setattr(parent, name, GGUFLinear(raw, qtype, (lin.out_features, lin.in_features), lin.bias.data, dtype))
        del lin


def measure(label, model, inputs, device, runs, baseline=None):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times, _, _ = time_forward(model, inputs, device, runs)
    median = statistics.median(times)
    line = f"{label:<34} {median:8.3f} s/forward ({', '.join(f'{t:.3f}' for t in times)})"
    if baseline:
        line += f"  x{median / baseline:.2f} vs baseline"
    if device.type == "cuda":
        line += (f" | weights {torch.cuda.memory_allocated(device) / 2**30:5.1f} GiB, "
                 f"peak {torch.cuda.max_memory_allocated(device) / 2**30:5.1f} GiB")
    print(line, flush=True)
    return median


def dequant_throughput(device, shape, check_rows: int):
    """Our kernels on ``device`` vs gguf's numpy dequantiser: GB/s and bit-exactness."""
    try:
        import gguf
    except ImportError:
        gguf = None
        print("gguf package not installed: numpy comparison skipped")
    gen = torch.Generator(device=device).manual_seed(0)
    print(f"GGUF dequant of one {shape[0]}x{shape[1]} weight (ffn.0 shape) to bf16 on {device}:")
    for qtype in (dequant.Q8_0, dequant.Q6_K, dequant.Q5_K, dequant.Q4_K, dequant.Q3_K, dequant.Q2_K,
                  dequant.Q5_1, dequant.Q5_0, dequant.Q4_1, dequant.Q4_0):
        raw = random_blocks(qtype, shape[0], shape[1], device, gen)
        dequant.dequantize(raw, qtype, shape, torch.bfloat16)
        sync(device)
        reps = 5
        start = time.perf_counter()
        for _ in range(reps):
            dequant.dequantize(raw, qtype, shape, torch.bfloat16)
        sync(device)
        sec = (time.perf_counter() - start) / reps
        line = (f"  {dequant.type_name(qtype):<5} {sec * 1e3:8.2f} ms  ({shape[0] * shape[1] * 2 / sec / 1e9:7.1f} GB/s "
                f"bf16 out, {raw.numel() / sec / 1e9:6.1f} GB/s packed in)")
        if gguf is not None:
            part = raw[:check_rows]
            ours = dequant.dequantize(part, qtype, (check_rows, shape[1])).cpu().numpy()
            start = time.perf_counter()
            ref = gguf.quants.dequantize(part.cpu().numpy(), gguf.GGMLQuantizationType(qtype))
            numpy_sec = (time.perf_counter() - start) * shape[0] / check_rows
            same = ours.view("uint32").tobytes() == ref.astype("float32").view("uint32").tobytes()
            line += f" | numpy (CPU) ~{numpy_sec * 1e3:8.0f} ms full tensor, bit-exact on {check_rows} rows: {same}"
        print(line, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU (checks the code path)")
    parser.add_argument("--runs", type=int, default=1, help="timed forwards per variant after one warm-up")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--skip-swap", action="store_true", help="skip the block-swap runs")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile every block (each variant recompiles; the warm-up forward is untimed)")
    args = parser.parse_args()

    if args.smoke:
        cfg, device, dtype, (width, height), frames = SMOKE, torch.device("cpu"), torch.float32, (64, 48), 9
        swaps, shape, check_rows = (1, 2), (256, 512), 256
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --smoke on a CPU machine")
        cfg, device, dtype, (width, height), frames = WAN_I2V_14B, torch.device("cuda"), torch.bfloat16, (832, 480), args.frames
        swaps, shape, check_rows = (20, 40), (13824, 5120), 64
        torch.backends.cuda.matmul.allow_tf32 = False
    wall = time.perf_counter()
    model = build_model(cfg, device, dtype, "sdpa")
    inputs, tokens, _ = make_inputs(cfg, width, height, frames, 1, device, dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if args.compile:
        for block in model.blocks:
            block.compile()
    print(f"{name}, torch {torch.__version__}; {width}x{height} x {frames} frames ({tokens} tokens), 1 speaker, "
          f"batch 1, sdpa; {len(model.blocks)} blocks; compile={args.compile}")

    base = measure(f"{str(dtype).split('.')[-1]} (baseline)", model, inputs, device, args.runs)
    if not args.skip_swap:
        for n in swaps:
            swap = block_swap.install(model, n, device, overlap=True)
            measure(f"block swap {n}, overlapped", model, inputs, device, args.runs, base)
            swap.overlap = False
            measure(f"block swap {n}, no overlap", model, inputs, device, args.runs, base)
            swap.remove()
            del model._block_swap
    convert_fp8(model, dtype, scaled_mm=False)
    measure("fp8 e4m3fn, up-cast per layer", model, inputs, device, args.runs, base)
    for _, _, lin in block_linears(model):
        lin.scaled_mm = True
    measure("fp8 e4m3fn, fp8 matmul (_scaled_mm)", model, inputs, device, args.runs, base)
    if any(not lin.scaled_mm for _, _, lin in block_linears(model)):
        print("  (fp8 matmul unsupported here: those layers fell back to up-casting)")
    for qtype in (dequant.Q8_0, dequant.Q4_K):
        convert_gguf(model, dtype, qtype, device)
        measure(f"GGUF {dequant.type_name(qtype)}, dequant per layer", model, inputs, device, args.runs, base)
    del model, inputs
    if device.type == "cuda":
        torch.cuda.empty_cache()
    dequant_throughput(device, shape, check_rows)
    print(f"total wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
