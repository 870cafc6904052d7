"""Seconds to turn 60 s of speech into InfiniteTalk audio embeddings (wav2vec2-base, random weights).

Full path of the node: 44.1 kHz stereo -> mono 16 kHz (soxr_hq) -> -23 LUFS -> wav2vec2 CNN ->
interpolation to 25 fps -> 12 transformer layers -> [1500, 12, 768]. Timed on CPU (fp32, as the
official code runs it) and, when CUDA is available, on the GPU in fp32 / fp16 / bf16.

    python bench/audio_embed.py            # real base config, 60 s of audio
    python bench/audio_embed.py --smoke    # tiny config, 3 s, CPU only (checks the code path)
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline.audio import Wav2Vec2Config, Wav2Vec2Encoder, compute_audio_embeds  # noqa: E402
from pipeline.audio.preprocess import loudness_normalize, to_mono_16k  # noqa: E402

TINY = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def random_encoder(config: Wav2Vec2Config) -> Wav2Vec2Encoder:
    """Seeded random weights drawn on the CPU, so every device runs the same model."""
    torch.manual_seed(0)
    model = Wav2Vec2Encoder(config, normalize_input=True)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.02)
    return model.eval()


def speech(seconds: float, rate: int = 44100) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    tone = 0.1 * torch.sin(2 * torch.pi * (150 + 40 * torch.sin(t)) * t)
    return torch.stack([tone, 0.8 * tone])[None].float() + 0.01 * torch.randn(1, 2, t.numel())


def timed(fn, device: str, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny config, 3 s of audio, CPU only")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config, seconds = (TINY, 3.0) if args.smoke else (Wav2Vec2Config(), args.seconds)
    wave = speech(seconds)
    audio = [(wave, 44100)]

    prep = timed(lambda: loudness_normalize(to_mono_16k(wave, 44100)), "cpu", args.repeats + 1)[1:]
    print(f"audio: {seconds:g} s, 44.1 kHz stereo; config hidden {config.hidden_size}, {config.num_hidden_layers} layers")
    print(f"preprocess (down-mix + soxr_hq + pyloudnorm, CPU): median {statistics.median(prep):.3f} s")

    runs = [("cpu", torch.float32)]
    if torch.cuda.is_available() and not args.smoke:
        runs += [("cuda", torch.float32), ("cuda", torch.float16), ("cuda", torch.bfloat16)]
    reference = None
    cpu_model = random_encoder(config)
    for device, dtype in runs:
        model = copy.deepcopy(cpu_model).to(device, dtype)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        result = {}
        times = timed(lambda: result.update(out=compute_audio_embeds(model, audio, fps=25.0)[0]),
                      device, args.repeats + 1)[1:] or [float("nan")]  # first run = warm-up
        embeds = result["out"]
        rows = embeds.speakers[0]
        note = ""
        if reference is None:
            reference = rows
        else:
            err = (rows - reference).abs().max().item() / max(1.0, reference.abs().max().item())
            note = f", max rel diff vs CPU fp32 {err:.2e}"
        peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device == "cuda" else ""
        print(f"embed {seconds:g} s on {device} {str(dtype).replace('torch.', '')}: median {statistics.median(times):.3f} s "
              f"(runs {', '.join(f'{t:.3f}' for t in times)}), output {tuple(rows.shape)}{peak}{note}")
        del model
    print(f"threads: torch {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
