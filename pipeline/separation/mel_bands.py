"""Which STFT bins feed each of Mel-Band RoFormer's overlapping mel bands.

The model groups the 1025 bins of a 2048-point STFT into ``num_bands`` bands: band ``b`` holds every bin
where the Slaney-style mel filter ``b`` (``librosa.filters.mel(sr, n_fft, n_mels)``, fmin 0, fmax sr/2,
Slaney area normalisation) is positive, with bin 0 forced into the first band and the last bin into the
last band, so every bin is covered. Only this binary layout matters; it is computed here in numpy so that
librosa is not needed at run time.
"""
from __future__ import annotations

import numpy as np
import torch

_F_SP = 200.0 / 3  # Slaney mel scale: linear below 1 kHz ...
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0  # ... logarithmic above


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asanyarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    log = hz >= _MIN_LOG_HZ
    return np.where(log, _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-10) / _MIN_LOG_HZ) / _LOG_STEP, mel)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asanyarray(mel, dtype=np.float64)
    hz = _F_SP * mel
    log = mel >= _MIN_LOG_MEL
    return np.where(log, _MIN_LOG_HZ * np.exp(_LOG_STEP * (mel - _MIN_LOG_MEL)), hz)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """[n_mels, 1 + n_fft // 2] float32 triangular filters with Slaney normalisation (librosa's default)."""
    bins = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, bins)
    weights = np.zeros((n_mels, len(bins)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


def band_layout(sample_rate: int, n_fft: int, num_bands: int) -> torch.Tensor:
    """[num_bands, 1 + n_fft // 2] bool: bin ``f`` belongs to band ``b``; every bin is in some band."""
    bands = torch.from_numpy(mel_filterbank(sample_rate, n_fft, num_bands))
    bands[0, 0] = 1.0
    bands[-1, -1] = 1.0
    layout = bands > 0
    if not layout.any(dim=0).all():
        raise ValueError(f"{num_bands} mel bands leave STFT bins uncovered at n_fft {n_fft}.")
    return layout
