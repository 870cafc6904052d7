"""Host memory and time per window of a real ComfyUI process dubbing 1, 5 and 20 minutes of audio with a 480p source
video, streamed: LoadVideo (VIDEO) -> InfiniteTalk Sampler (source_video) -> SaveVideo.

Tiny models on CPU (the golden tiny DiT through the real model loader, the pack's TinyCodec behind core's VAE
interface, stub CLIP vision / text / audio embeddings: tests/integration/sampler_stub_nodes), so what is measured
is the streaming: decoding the 854x480 source window by window, writing H.264 segments, checkpoints and the
final mux. Output 112x64, 1 step, cfg 1 (2 DiT calls per window), window 81 / motion 9.

``--face``: the face-only path instead, streamed the same way: LoadVideo -> InfiniteTalk Face Plan (video) (a typed
box) -> sampler (source_video + face_plan: a 64x64 face crop generated per window, pasted into the 854x480 frames,
which the mp4 holds) -> SaveVideo. Measured on the 2-core CPU dev box (ComfyUI 0.8.0): 1 min = 21 windows, RSS
1133 MB at window 1 and 1118 MB at window 21; 5 min = 105 windows, 1401 MB at window 1 and 1416 MB at window 105;
peak minus the idle server minus the audio embeddings input: +37 MB (1 min), +46 MB (5 min); 4.3-5.7 s per window
(paste and H.264 of 72 frames at 854x480; median of the first/last 10% of windows), not growing with the index.
20 min = 417 windows: RSS 2230 MB at window 1 and 2306 MB at window 417, +236 MB over the idle server and the
1055 MB embeddings input; 4.9 s per window in the first 10%, 7.7 s in the last 10%, which read the 5-minute
source backwards (ping-pong) where every frame then sought a keyframe: measured before the reader's backward
prefetch (72 frames backwards 1.55 -> 0.55 s; forward 0.33-0.44 s). With it, 10 min = 209 windows (the second half
backwards): RSS 1697 MB at window 1, 1706 MB at window 209, +177 MB; 5.3 s per window in the first 10%, 5.0 s in
the last.

RSS of the ComfyUI server process is sampled every 0.2 s. The audio embeddings are an INPUT that grows with the
audio (12 x 768 float32 per frame = 0.92 MB/s, as the real wav2vec2 embeddings); the bound is on what the render
adds on top of them. Time per window is read from the sampler's progress line ("window i/n done in x s").

    COMFYUI_PATH=/root/ComfyUI python bench/long_video.py [--minutes 1 5 20] [--face]
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

import numpy as np  # noqa: E402

import golden  # noqa: E402
from comfyui_harness import ComfyServer, comfyui_python, find_comfyui  # noqa: E402
from test_long_video_comfyui import long_prompt, tiny_models, write_tone  # noqa: E402

SOURCE_MINUTES = 5  # the source video; longer audio ping-pongs over it
EMBED_BYTES_PER_FRAME = 12 * 768 * 4
FACE_BOX = "347,140,507,340"  # a "face" box in the 854x480 frame (typed: no detector needed)


def face_only(prompt: dict) -> dict:
    """The streamed face-only path: Face Plan (video) on the LoadVideo, its plan into the sampler (64x64 crop)."""
    prompt["2"] = {"class_type": "InfiniteTalkFacePlan", "inputs": {
        "video": ["1", 0], "width": 64, "height": 64, "padding": 0.6, "window": 0, "region": "lower_face",
        "detect_every": 5, "dilation": 8, "smoothing": 5, "feather": 12, "colour_match": "lab", "erode": 0,
        "box": FACE_BOX}}
    prompt["10"]["inputs"].update(face_plan=["2", 0], width=64, height=64)
    return prompt


def write_480p(path: Path, seconds: float, fps: int = 25) -> None:
    import av
    h, w = 480, 854
    yy, xx = np.mgrid[:h, :w]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "crf": "28"})
        s.height, s.width, s.pix_fmt = h, w, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.stack([(xx + 3 * i) % 256, (yy + i) % 256, np.full_like(xx, (i // 25) % 256)], -1)
            c.mux(s.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")))
        c.mux(s.encode(None))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Sampler(threading.Thread):
    """RSS every 0.2 s, and the RSS when each "window i/n done" line appears in the server log."""

    def __init__(self, pid, log_path):
        super().__init__(daemon=True)
        self.pid, self.log_path, self.samples, self.at_window = pid, log_path, [], {}
        self.stop = threading.Event()
        self.offset = log_path.stat().st_size

    def run(self):
        while not self.stop.is_set():
            rss = rss_mb(self.pid)
            self.samples.append((time.monotonic(), rss))
            with open(self.log_path, errors="replace") as f:
                f.seek(self.offset)
                text = f.read()
                self.offset = f.tell()
            for index in re.findall(r"window (\d+)/\d+ done in", text):
                self.at_window[int(index)] = rss
            time.sleep(0.2)


def window_times(log: str, total: int) -> list[float]:
    """Seconds of windows 1..total of the LAST render in the log."""
    times = {}
    for index, n, seconds in re.findall(r"window (\d+)/(\d+) done in ([\d.]+) s", log):
        if int(n) == total:
            times[int(index)] = float(seconds)
    return [times[k] for k in sorted(times)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 20])
    parser.add_argument("--face", action="store_true", help="the face-only path (Face Plan (video) + face_plan)")
    args = parser.parse_args()
    shape = face_only if args.face else (lambda prompt: prompt)
    comfyui = find_comfyui()
    base = Path(tempfile.mkdtemp(prefix="it_long_bench_"))
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "it_sampler_stubs").symlink_to(ROOT / "tests/integration/sampler_stub_nodes")
    import os
    os.environ["IT_STUB_GOLDEN_DIR"] = str(golden.golden_dir())
    os.environ["OMP_NUM_THREADS"] = "1"  # tiny models: one torch thread is ~10x faster on a busy 2-core machine
    srv = ComfyServer(comfyui, base, comfyui_python(comfyui))
    srv.start()
    try:
        tiny_models(srv)
        t = time.monotonic()
        write_480p(srv.input_dir / "src480.mp4", SOURCE_MINUTES * 60)
        print(f"ComfyUI {comfyui}; source 854x480 25 fps {SOURCE_MINUTES} min written in {time.monotonic() - t:.0f} s"
              + ("; face-only path (64x64 crop pasted into 854x480)" if args.face else ""))
        write_tone(srv.input_dir / "warm.wav", 4)
        srv.wait(srv.queue(shape(long_prompt("src480.mp4", "warm.wav", 4.0, "bench/warm", name="it_long"))), 900)
        rows = []
        for minutes in args.minutes:
            seconds = minutes * 60
            write_tone(srv.input_dir / f"tone{minutes:g}.wav", seconds)
            before = rss_mb(srv._process.pid)
            sampler = Sampler(srv._process.pid, srv.log_path)
            sampler.start()
            t = time.monotonic()
            prompt = long_prompt("src480.mp4", f"tone{minutes:g}.wav", seconds, f"bench/m{minutes:g}")
            prompt["10"]["inputs"].update(width=112, height=64, source_end="pingpong")
            prompt = shape(prompt)
            entry = srv.wait(srv.queue(prompt), timeout=6 * 3600)
            wall = time.monotonic() - t
            sampler.stop.set()
            sampler.join()
            assert entry["status"]["status_str"] == "success", entry["status"]
            frames = round(seconds * 25)
            windows = 1 + -(-(frames - 81) // 72)
            times = window_times(srv.log(), windows)
            peak = max(r for _, r in sampler.samples)
            embeds = frames * EMBED_BYTES_PER_FRAME / 2 ** 20
            tenth = max(1, len(times) // 10)
            marks = sampler.at_window
            first_w, last_w = (marks[min(marks)], marks[max(marks)]) if marks else (float("nan"),) * 2
            window_peak = max(marks.values()) if marks else float("nan")
            rows.append((minutes, windows, wall, before, peak, embeds, first_w, last_w, window_peak,
                         statistics.median(times[:tenth]), statistics.median(times[-tenth:])))
            print(f"{minutes:g} min: {windows} windows in {wall:.0f} s; RSS before {before:.0f} MB, peak {peak:.0f} MB "
                  f"(+{peak - before:.0f}; audio embeddings input {embeds:.0f} MB); RSS at window 1 {first_w:.0f}, "
                  f"at window {windows} {last_w:.0f}, max over windows {window_peak:.0f} MB; s/window median "
                  f"first 10% {rows[-1][9]:.3f}, last 10% {rows[-1][10]:.3f}", flush=True)
        print("\nminutes windows wall_s rss_before peak peak-before-embeds rss@win1 rss@last max@windows "
              "s/win_first10% s/win_last10%   (MB)")
        for m, w, wall, before, peak, emb, fw, lw, wp, first, last in rows:
            print(f"{m:7g} {w:7d} {wall:6.0f} {before:10.0f} {peak:5.0f} {peak - before - emb:18.0f} {fw:8.0f} "
                  f"{lw:8.0f} {wp:11.0f} {first:14.3f} {last:13.3f}")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
