"""Seconds per minute of audio for vocal separation (Mel-Band RoFormer at the real size, 228 M parameters, random
weights), with the device memory it peaks at.

Full path of the node on 44.1 kHz stereo: chunks of 8 s with 50 % overlap, one at a time on the device, overlap-add.
Baseline, in the same run: the same loop around bs-roformer 0.3.10's model (the oracle, output identical to the
model of Kijai's MelBandRoFormer node), when that package imports; its librosa import is served by our mel
filterbank if librosa is missing. Variants: ours in fp32 (the reference's precision and the node's) and, for
information, under bf16 autocast.

    python bench/vocal_separation.py                  # 60 s, plus 300 s for the memory check, on CUDA
    python bench/vocal_separation.py --smoke          # tiny model, 10 s, CPU (checks the code path)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline.separation import MelBandRoformer, RoformerConfig, separate_vocals  # noqa: E402
from pipeline.separation.mel_bands import mel_filterbank  # noqa: E402
from pipeline.separation.separate import vocals_44k  # noqa: E402

TINY = RoformerConfig(dim=16, depth=1, heads=1, dim_head=8, ff_dim=64, mask_hidden=64)


def random_model(cfg: RoformerConfig, device) -> MelBandRoformer:
    torch.manual_seed(0)
    return MelBandRoformer(cfg).to(device).eval().requires_grad_(False)


def reference_model(ours: MelBandRoformer, device):
    """bs-roformer 0.3.10 with our weights, or None when it is not installed."""
    try:
        import librosa  # noqa: F401
    except ImportError:  # only filters.mel is used, at construction
        sys.modules["librosa"] = types.SimpleNamespace(filters=types.SimpleNamespace(
            mel=lambda sr, n_fft, n_mels: mel_filterbank(sr, n_fft, n_mels)))
    try:
        from bs_roformer.mel_band_roformer import MelBandRoformer as Reference
    except ImportError as e:
        print(f"baseline skipped: bs-roformer 0.3.10 not importable ({e})")
        return None
    c = ours.cfg
    ref = Reference(dim=c.dim, depth=c.depth, stereo=True, num_stems=1, time_transformer_depth=c.time_depth,
                    freq_transformer_depth=c.freq_depth, num_bands=c.num_bands, dim_head=c.dim_head, heads=c.heads,
                    attn_dropout=0.0, ff_dropout=0.0, flash_attn=True, stft_hop_length=c.hop,
                    mask_estimator_depth=c.mask_depth)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ref.to(device).eval().requires_grad_(False)


def audio(seconds: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, int(seconds * 44100), generator=gen) * 0.1


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")
    return out, time.perf_counter() - start, peak


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--long", type=float, default=300.0, help="second length for the flat-memory check (0: skip)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    cfg = TINY if args.smoke else RoformerConfig()
    seconds = 10.0 if args.smoke else args.seconds
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    model = random_model(cfg, device)
    print(f"device: {name}; torch {torch.__version__}; model: {len(model.state_dict())} tensors, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, dim {cfg.dim}, depth {cfg.depth}")
    x = audio(seconds)
    vocals_44k(model, audio(9.0 if not args.smoke else 1.0))  # warm-up (kernels, allocator)
    results = {}
    ours, t, peak = timed(lambda: vocals_44k(model, x), device)
    results["ours fp32"] = (t, peak)
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            fast, t, peak = timed(lambda: vocals_44k(model, x), device)
        results["ours bf16 autocast (info)"] = (t, peak)
        print(f"bf16 autocast vs fp32: max abs diff {(fast - ours).abs().max().item():.3g} "
              f"(signal max {ours.abs().max().item():.3g})")
    ref = reference_model(model, device)
    if ref is not None:
        vocals_44k(ref, audio(9.0 if not args.smoke else 1.0))
        theirs, t, peak = timed(lambda: vocals_44k(ref, x), device)
        results["baseline bs-roformer 0.3.10"] = (t, peak)
        err = ((ours - theirs).abs() / theirs.abs().clamp(min=1)).max().item()
        print(f"ours vs baseline on {seconds:g} s: max relative error {err:.3g}")
        del ref
    for label, (t, peak) in results.items():
        print(f"{label:32s} {t:7.2f} s for {seconds:g} s -> {t / seconds * 60:6.2f} s per minute of audio; "
              f"peak device memory {peak:.2f} GiB")
    if args.long and not args.smoke:
        wave = audio(args.long)
        (_, _), t, peak = timed(lambda: separate_vocals(model, wave, 44100), device)
        print(f"node path (separate_vocals) on {args.long:g} s: {t:.1f} s -> {t / args.long * 60:.2f} s per minute; "
              f"peak device memory {peak:.2f} GiB (flat in length: one 8 s chunk at a time)")


if __name__ == "__main__":
    main()
