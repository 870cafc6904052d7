"""Audio files in tests: decode any file with PyAV, write 16-bit PCM wav."""
from __future__ import annotations

import wave

import numpy as np
import pytest


def read_audio(path) -> tuple[int, np.ndarray]:
    """(rate, [C, T] float64) of an audio file, decoded with PyAV."""
    av = pytest.importorskip("av")
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        planar = av.AudioResampler(format="fltp")
        data = np.concatenate([f.to_ndarray() for frame in c.decode(audio=0) for f in planar.resample(frame)], axis=-1)
    return rate, data.astype(np.float64)


def write_pcm_wav(path, data: np.ndarray, rate: int = 44100) -> np.ndarray:
    """Write [C, T] float in [-1, 1] as a 16-bit wav; returns what the file holds, [C, T] float64."""
    pcm = np.round(data * 32767).clip(-32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(pcm.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.T.tobytes())
    return pcm.astype(np.float64) / 32768
