"""The output video written window by window (PyAV): one H.264 segment per window, then one mp4.

Each window's frames are encoded into their own small H.264 (yuv420p, ``crf``) segment as soon as the
window is done, so nothing but one window is ever in memory and a render that stops keeps every finished
window on disk (``sampler/resume.py``). ``assemble`` joins the segments into the final mp4 by copying
their packets (no re-encode; each segment starts on a keyframe) and interleaves the audio, AAC-encoded
chunk by chunk and trimmed to exactly the video's frames. A segment is encoded by a fresh encoder from
the same frames in an interrupted and an uninterrupted render, so both give identical files' frames.
x264's macroblock tree is off: with it, the same frames encoded to different bits in ~10% of encodes at
16x32 and ~2% at 64x112 (dirty heap, busy CPU), which a resumed file must not; without it 0 of 100 did.
"""
from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import torch

from .reader import _av

DEFAULT_CRF = 19


def _rate(fps: float) -> Fraction:
    """The container frame rate for ``fps`` (as core ComfyUI writes it: millifps precision)."""
    return Fraction(round(float(fps) * 1000), 1000)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[n,H,W,3] float 0..1 -> uint8 (rounded)."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def _replace(tmp: str, path: str) -> None:
    os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one, never half of one


def encode_segment(path: str, frames, fps: float, crf: int = DEFAULT_CRF) -> None:
    """Encode frames into an H.264 yuv420p mp4 at ``path`` (atomically): [n,H,W,3] float 0..1 (H, W even), or
    an iterable of [H,W,3] frames encoded as they come (one full-resolution frame in memory at a time)."""
    av = _av()
    tmp = path + ".part"
    with av.open(tmp, "w", format="mp4") as out:
        stream = None
        for frame in frames:
            image = to_uint8(frame[None])[0]
            if stream is None:
                h, w = image.shape[:2]
                if h % 2 or w % 2:
                    raise ValueError(f"H.264 yuv420p needs an even width and height (got {w}x{h}).")
                stream = out.add_stream("libx264", rate=_rate(fps),
                                        options={"crf": str(int(crf)), "x264-params": "mbtree=0"})
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        if stream is None:
            raise ValueError("encode_segment: no frames to encode.")
        out.mux(stream.encode(None))
    _replace(tmp, path)


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, "stereo")


def _audio_frame(av, samples: np.ndarray, rate: int, pts: int):
    """[C,n] float32 -> an AudioFrame (planar float) starting at sample ``pts``."""
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32), format="fltp",
                                       layout=_layout(samples.shape[0]))
    frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
    return frame


def assemble(path: str, segments: list[str], fps: float, num_frames: int,
             audio: tuple[torch.Tensor, int] | None = None) -> None:
    """Join segment files (in order) into one mp4 at ``path`` with ``audio`` = (waveform [C,T] float, rate)
    trimmed (or zero-padded) to ``num_frames / fps`` seconds. More than 2 channels keep the first two."""
    av = _av()
    rate = _rate(fps)
    tmp = path + ".part.mp4"
    wave = None if audio is None else audio[0].float()[:2].cpu().numpy()
    sr = None if audio is None else int(audio[1])
    total_samples = 0 if audio is None else round(num_frames / rate * sr)
    with av.open(tmp, "w", format="mp4", options={"movflags": "use_metadata_tags"}) as out:
        vstream = astream = None
        frames_done = samples_done = 0
        for segment in segments:
            with av.open(segment) as src:
                sstream = src.streams.video[0]
                if vstream is None:
                    vstream = out.add_stream_from_template(sstream)
                    if wave is not None:
                        astream = out.add_stream("aac", rate=sr, layout=_layout(wave.shape[0]))
                offset = round(Fraction(frames_done) / rate / sstream.time_base)
                count = 0
                for packet in src.demux(sstream):
                    if packet.size == 0:
                        continue
                    packet.pts += offset
                    packet.dts += offset
                    packet.stream = vstream
                    out.mux(packet)
                    count += 1
                frames_done += count
            if astream is not None:  # the audio of these frames, interleaved after them
                stop = min(total_samples, round(Fraction(frames_done) / rate * sr))
                chunk = wave[:, samples_done:stop]
                if chunk.shape[1] < stop - samples_done:  # audio shorter than the video: silence
                    chunk = np.pad(chunk, ((0, 0), (0, stop - samples_done - chunk.shape[1])))
                if chunk.shape[1]:
                    out.mux(astream.encode(_audio_frame(av, chunk, sr, samples_done)))
                samples_done = stop
        if astream is not None:
            out.mux(astream.encode(None))
    if frames_done != num_frames:
        os.remove(tmp)
        raise RuntimeError(f"assembled {frames_done} frames from {len(segments)} segments, expected {num_frames}.")
    _replace(tmp, path)
