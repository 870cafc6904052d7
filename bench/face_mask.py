"""Face-mask throughput at 480p (854x480): SAM2.1 video masks per second for the four real sizes
(random weights), against the no-SAM2 paths measured in the same run (box ellipse, OpenCV face
tracking) and the compositor.

    python bench/face_mask.py                     # CUDA (bf16) if present, then CPU (fp32)
    python bench/face_mask.py --devices cuda --frames 96
    python bench/face_mask.py --smoke             # miniature SAM2 on CPU, same code path

Prints, per device and size: masks/s over --frames frames (after a 2-frame warm-up; the first frame
of the timed run carries the box prompt), ms/frame and peak CUDA memory.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.mask import sam2_keys  # noqa: E402
from pipeline.mask.composite import composite  # noqa: E402
from pipeline.mask.face_mask import face_masks  # noqa: E402
from pipeline.mask.sam2_model import Sam2Model, _transformers, build_config  # noqa: E402
from pipeline.mask.sam2_video import segment_face  # noqa: E402

SIZES = ("tiny", "small", "base_plus", "large")
WIDTH, HEIGHT = 854, 480
BOX = torch.tensor([360.0, 120, 500, 280])


def _video(frames: int, height: int, width: int) -> torch.Tensor:
    """A smooth synthetic clip with a bright blob moving like a head (content does not change cost)."""
    t = torch.arange(frames, dtype=torch.float32)[:, None, None]
    ys = torch.arange(height, dtype=torch.float32)[None, :, None]
    xs = torch.arange(width, dtype=torch.float32)[None, None, :]
    blob = torch.exp(-(((xs - width / 2 - 3 * t) / 70) ** 2 + ((ys - height / 2.5) / 90) ** 2))
    base = torch.stack([0.2 + 0.6 * blob, 0.2 + 0.5 * blob, 0.3 + 0.4 * blob], dim=-1)
    return base.clamp(0, 1)


def random_sam2(name: str, dtype: torch.dtype, device: str) -> Sam2Model:
    """The real SAM2.1 architecture ``name`` (tiny/small/base_plus/large) with random weights, built
    directly on ``device`` (the cost does not depend on the weights)."""
    tf = _transformers()
    name, config = build_config(sam2_keys.size_layout(name))
    with torch.device(device):
        model = tf.Sam2VideoModel(config)
    return Sam2Model(model.to(dtype=dtype).eval(), name, dtype)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def bench_sam2(size: str, device: str, frames: int, height: int, width: int) -> str:
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    sam = random_sam2(size, dtype=dtype, device=device)
    params = sum(p.numel() for p in sam.model.parameters()) / 1e6
    video = _video(frames, height, width).to(device)
    box = BOX * torch.tensor([width / WIDTH, height / HEIGHT] * 2)
    segment_face(sam, video[:2], box, device=device)  # warm-up (kernels, allocator)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    start = time.perf_counter()
    masks, _ = segment_face(sam, video, box, device=device)
    _sync(device)
    seconds = time.perf_counter() - start
    peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if torch.device(device).type == "cuda" else ""
    del sam
    return (f"  SAM2.1 {size:<10} ({params:5.1f} M params, {str(dtype)[6:]}): {frames / seconds:8.2f} masks/s "
            f"({1000 * seconds / frames:7.1f} ms/frame){peak}")


def bench_baselines(frames: int, height: int, width: int) -> list[str]:
    """The paths without SAM2 (CPU): box ellipse, OpenCV tracking + ellipse, and the compositor."""
    video = _video(frames, height, width)
    box = tuple((BOX * torch.tensor([width / WIDTH, height / HEIGHT] * 2)).tolist())
    lines = []
    start = time.perf_counter()
    masks, _, _ = face_masks(video, box=box, region="lower_face", dilation=8, smoothing=5)
    s = time.perf_counter() - start
    lines.append(f"  box ellipse (no SAM2), dilation 8, smoothing 5: {frames / s:8.2f} masks/s "
                 f"({1000 * s / frames:.1f} ms)")
    try:
        from pipeline.mask.face_box import detect_faces
        start = time.perf_counter()
        for t in range(frames):
            detect_faces(video[t])
        s = time.perf_counter() - start
        lines.append(f"  OpenCV Haar detection (every frame): {frames / s:8.2f} frames/s ({1000 * s / frames:.1f} ms)")
    except ImportError as err:
        lines.append(f"  OpenCV Haar detection: skipped ({err})")
    start = time.perf_counter()
    composite(1 - video, video, masks, feather_radius=12, colour_match="lab")
    s = time.perf_counter() - start
    lines.append(f"  compositor (feather 12, Lab colour match): {frames / s:8.2f} frames/s "
                 f"({1000 * s / frames:.1f} ms)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="cuda,cpu", help="comma-separated: cuda, cpu (cuda skipped if absent)")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated SAM2.1 sizes")
    parser.add_argument("--frames", type=int, default=0, help="timed frames (default 96 on CUDA, 4 on CPU)")
    parser.add_argument("--smoke", action="store_true", help="miniature SAM2, small frames, CPU only")
    args = parser.parse_args()
    height, width = HEIGHT, WIDTH
    sizes = [s for s in args.sizes.split(",") if s]
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    if args.smoke:
        sys.path.insert(0, str(ROOT / "tests"))
        from sam2_tiny import TINY_TRUNK
        sam2_keys.KNOWN_TRUNKS.update(TINY_TRUNK)
        sizes, devices, height, width = [v["name"] for v in TINY_TRUNK.values()], ["cpu"], 120, 212
    torch.set_grad_enabled(False)
    print(f"Face masks at {width}x{height}; torch {torch.__version__}; "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA'}")
    for device in devices:
        frames = args.frames or (96 if device == "cuda" else 4)
        print(f"{device} ({frames} timed frames):")
        for size in sizes:
            print(bench_sam2(size, device, frames, height, width), flush=True)
    frames = 6 if args.smoke else args.frames or 48
    print(f"baselines without SAM2, CPU ({frames} frames, {torch.get_num_threads()} threads):")
    for line in bench_baselines(frames, height, width):
        print(line, flush=True)


if __name__ == "__main__":
    main()
