"""One InfiniteTalk DiT forward on several GPUs (Ulysses sequence parallelism + guidance parallelism).

    python bench/parallel_forward.py                    # 14B random bf16, 480p, 1 GPU baseline vs 2/4/8 GPUs
    python bench/parallel_forward.py --gpus 2,4 --res 720p
    python bench/parallel_forward.py --smoke            # tiny config, CPU processes over gloo (code path only)

Prints, for each GPU count: seconds per forward of one guidance row (sequence parallel) and of two
rows (guidance parallel when the count allows), the speed-up over the single-GPU baseline measured
in the same run, the relative L2 difference from the baseline output, and the time of the
all-to-alls alone (80 per forward: before and after every block's self-attention).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.dit_forward import RESOLUTIONS, SMOKE, build_model, make_inputs, sync, time_forward  # noqa: E402
from pipeline.dit import WAN_I2V_14B, DiTConfig  # noqa: E402
from pipeline.parallel.layout import check_world  # noqa: E402
from pipeline.parallel.pool import ParallelDiT  # noqa: E402


class AllToAllProbe(torch.nn.Module):
    """A stand-in 'model' whose forward is only the all-to-alls of a real one (same shapes and dtype)."""

    def __init__(self, cfg: DiTConfig, dtype, device):
        super().__init__()
        self.cfg, self.dtype, self.device = cfg, dtype, device
        self.sequence_group = None

    def forward(self, x, t, context, clip_fea, y, audio, speaker_masks=None, audio_scale=1.0):
        from pipeline.parallel.sequence import SequenceShard
        tokens = x.shape[2] * (x.shape[3] // 2) * (x.shape[4] // 2)
        if self.sequence_group is not None:
            shard = SequenceShard(self.sequence_group, tokens)
            q = torch.randn(x.shape[0], shard.stop - shard.start, self.cfg.num_heads, self.cfg.head_dim,
                            device=self.device, dtype=self.dtype)
            for _ in range(self.cfg.num_layers):
                shard._to_tokens(shard._to_heads(torch.stack([q, q, q]))[0])
        return torch.zeros_like(x, dtype=torch.float32)


def worker_model(device, smoke: bool, attention: str, probe: bool = False):
    cfg = SMOKE if smoke else WAN_I2V_14B
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return AllToAllProbe(cfg, dtype, device) if probe else build_model(cfg, device, dtype, attention)


def timed(model, inputs, device, runs):
    """(median seconds of ``runs`` forwards, the warm-up's output): ``dit_forward.time_forward``'s rule."""
    times, _, out = time_forward(model, inputs, device, runs)
    return statistics.median(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--gpus", default="", help="comma list of GPU counts (default: 2,4,8 up to the visible count)")
    parser.add_argument("--res", default="480p", choices=sorted(RESOLUTIONS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--attention", default="sdpa")
    args = parser.parse_args()

    if args.smoke:
        cfg, device, kind, counts = SMOKE, torch.device("cpu"), "cpu", [2]
        width, height, frames = 64, 48, 9
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --smoke")
        cfg, device, kind = WAN_I2V_14B, torch.device("cuda:0"), "cuda"
        visible = torch.cuda.device_count()
        counts = [int(c) for c in args.gpus.split(",")] if args.gpus else [c for c in (2, 4, 8) if c <= visible]
        width, height = RESOLUTIONS[args.res]
        frames = 81
    dtype = torch.bfloat16 if kind == "cuda" else torch.float32
    inputs, tokens, _ = make_inputs(cfg, width, height, frames, 1, device, dtype)
    two_rows = dict(inputs, x=inputs["x"].expand(2, -1, -1, -1, -1), t=inputs["t"].expand(2),
                    audio=torch.cat([inputs["audio"], torch.zeros_like(inputs["audio"])]))
    name = torch.cuda.get_device_name(0) if kind == "cuda" else "cpu"
    print(f"{name}; {tokens} tokens ({width}x{height}x{frames}); torch {torch.__version__}", flush=True)

    base = worker_model(device, args.smoke, args.attention)
    one, ref = timed(base, inputs, device, args.runs)
    two, ref2 = timed(base, two_rows, device, args.runs)
    print(f"[1 GPU] 1 row {one:.3f} s/forward, 2 rows {two:.3f} s", flush=True)
    ref, ref2 = ref.float().cpu(), ref2.float().cpu()
    del base
    if kind == "cuda":
        torch.cuda.empty_cache()

    file = str(Path(__file__).resolve())
    for count in counts:
        why = check_world(count, cfg.num_heads)
        if why:
            print(f"[{count} GPUs] skipped: {why}")
            continue
        devices = [f"{kind}:{i}" if kind == "cuda" else "cpu" for i in range(count)]
        spec = {"kind": "python", "file": file, "function": "worker_model",
                "kwargs": {"smoke": args.smoke, "attention": args.attention}}
        start = time.perf_counter()
        pool = ParallelDiT(spec, cfg, devices)
        started = time.perf_counter() - start
        t1, out1 = timed(pool, inputs, torch.device("cpu"), args.runs)
        t2, out2 = timed(pool, two_rows, torch.device("cpu"), args.runs)
        err1 = ((out1.cpu() - ref).norm() / ref.norm()).item()
        err2 = ((out2.cpu() - ref2).norm() / ref2.norm()).item()
        pool.close()
        probe = ParallelDiT(dict(spec, kwargs=dict(spec["kwargs"], probe=True)), cfg, devices)
        t_a2a, _ = timed(probe, inputs, torch.device("cpu"), args.runs)
        t_empty, _ = timed(probe, dict(inputs, x=inputs["x"][:, :, :1, :2, :2]), torch.device("cpu"), args.runs)
        probe.close()
        print(f"[{count} GPUs] 1 row {t1:.3f} s/forward ({one / t1:.2f}x), 2 rows {t2:.3f} s ({two / t2:.2f}x); "
              f"rel. L2 vs 1 GPU {err1:.1e} / {err2:.1e}; all-to-all {max(t_a2a - t_empty, 0):.3f} s per forward "
              f"(probe {t_a2a:.3f} s - pool overhead {t_empty:.3f} s); workers up in {started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
