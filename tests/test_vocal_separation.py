"""Vocal separation (issue 15): our Mel-Band RoFormer and chunked inference against the oracle, bs-roformer 0.3.10
(strict-loads Kijai's file, output identical to his model) driven by the reference node's loop, on random weights
in the real key layout."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import separation_files as sf
from infinitetalk_lipsync.pipeline.audio.preprocess import resample
from infinitetalk_lipsync.pipeline.separation import load_roformer, separate_vocals
from infinitetalk_lipsync.pipeline.separation.loading import build
from infinitetalk_lipsync.pipeline.separation.separate import vocals_44k

TOL = 1e-5


def close(ours, ref, what):
    ref = torch.as_tensor(ref)
    err = ((ours - ref).abs() / ref.abs().clamp(min=1)).max().item()
    assert err <= TOL, f"{what}: max relative error {err:.3g} > {TOL}"


def reference_loop(model, audio):
    """The reference node's overlap-add (Kijai's MelBandRoFormerSampler), written out for 44.1 kHz stereo [2, T];
    the padding decision on the 44.1 kHz length."""
    C, N = 352800, 2
    step, fade = C // N, C // 10
    border = C - step
    length = audio.shape[-1]
    if length > 2 * border and border > 0:
        audio = F.pad(audio, (border, border), mode="reflect")
    window_base = torch.ones(C)
    window_base[-fade:] *= torch.linspace(1, 0, fade)
    window_base[:fade] *= torch.linspace(0, 1, fade)
    vocals, counter = torch.zeros_like(audio), torch.zeros_like(audio)
    total = audio.shape[1]
    for i in range(0, total, step):
        part = audio[:, i:i + C]
        n = part.shape[-1]
        if n < C:
            if n > C // 2 + 1:
                part = F.pad(part, (0, C - n), mode="reflect")
            else:
                part = F.pad(part, (0, C - n, 0, 0), mode="constant", value=0)
        with torch.no_grad():
            x = model(part.unsqueeze(0))[0]
        window = window_base.clone()
        if i == 0:
            window[:fade] = 1
        elif i + C >= total:
            window[-fade:] = 1
        vocals[..., i:i + n] += x[..., :n] * window[..., :n]
        counter[..., i:i + n] += window[..., :n]
    out = vocals / counter
    return out[..., border:-border] if length > 2 * border and border > 0 else out


def oracle_separation(reference, wave, rate):
    """[C, T] at ``rate`` -> vocals [C, T]: librosa.resample to 44.1 kHz, mono copied to stereo, the reference loop,
    back to ``rate`` (mono: channel mean)."""
    librosa = pytest.importorskip("librosa")
    stereo = wave.repeat(2, 1) if wave.shape[0] == 1 else wave
    x = torch.from_numpy(librosa.resample(stereo.numpy(), orig_sr=rate, target_sr=44100, axis=-1))
    vocals = reference_loop(reference, x)
    if wave.shape[0] == 1:
        vocals = vocals.mean(0, keepdim=True)
    back = resample(vocals.numpy(), 44100, rate)[:, :wave.shape[-1]]
    return torch.from_numpy(np.pad(back, ((0, 0), (0, wave.shape[-1] - back.shape[-1]))))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """fp16 file in the real key layout; the oracle gets the same (fp16-rounded) values."""
    sd = sf.random_state_dict(seed=1)
    path = sf.write(tmp_path_factory.mktemp("roformer") / "MelBandRoformer_fp16.safetensors", sd)
    return path, {k: v.half().float() for k, v in sd.items()}


@pytest.fixture(scope="module")
def ours(weights):
    return load_roformer(weights[0])


@pytest.fixture(scope="module")
def reference(weights):
    pytest.importorskip("bs_roformer", reason="test oracle bs-roformer==0.3.10 (tests/requirements.txt)")
    return sf.reference_model(weights[1])


@pytest.fixture(scope="module")
def shallow_weights():
    """Depth 2 (same key pattern, a third of the cost) for the multi-chunk and full-path cases."""
    return sf.random_state_dict(seed=2, config=sf.small_config(depth=2))


@pytest.fixture(scope="module")
def shallow(shallow_weights):
    return build(shallow_weights)


@pytest.fixture(scope="module")
def shallow_reference(shallow_weights):
    pytest.importorskip("bs_roformer", reason="test oracle bs-roformer==0.3.10 (tests/requirements.txt)")
    return sf.reference_model(shallow_weights, depth=2)


def test_real_layout_has_684_tensors_and_loads_into_the_oracle(weights):
    assert len(weights[1]) == 684
    pytest.importorskip("bs_roformer")
    sf.reference_model(weights[1])  # strict


def test_real_size_model_matches_the_oracle_key_for_key():
    """The real file's sizes (228 M parameters): our model's state dict is the oracle's, name for name and shape for
    shape, and our config reader recovers Kijai's configuration from it."""
    pytest.importorskip("bs_roformer")
    from bs_roformer.mel_band_roformer import MelBandRoformer as Reference
    from infinitetalk_lipsync.pipeline.separation import MelBandRoformer, RoformerConfig
    from infinitetalk_lipsync.pipeline.separation.loading import config_from_state_dict
    with torch.device("meta"):
        ref = {k: tuple(v.shape) for k, v in Reference(**sf.REAL).state_dict().items()}
        mine = {k: tuple(v.shape) for k, v in MelBandRoformer(RoformerConfig()).state_dict().items()}
    assert mine == ref and len(ref) == 684
    assert sum(np.prod(s) for s in ref.values()) == 228_203_172
    assert config_from_state_dict({k: torch.empty(s, device="meta") for k, s in ref.items()}) == RoformerConfig()


def test_one_chunk_matches_the_oracle(ours, reference):
    x = torch.randn(2, 2, 88200, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        close(ours(x), reference(x), "model forward (batch of 2 chunks)")


def test_mel_bands_match_librosa():
    librosa = pytest.importorskip("librosa")
    from infinitetalk_lipsync.pipeline.separation.mel_bands import mel_filterbank
    ours = mel_filterbank(44100, 2048, 60)
    ref = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=60)
    assert np.array_equal(ours > 0, ref > 0) and np.abs(ours - ref).max() < 1e-8


class _Standin(torch.nn.Module):
    """Cheap position-dependent stand-in for the model (so fades and overlap weights matter)."""

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        ramp = torch.linspace(0, 1, x.shape[-1])
        return self.gain * x + 0.2 * torch.roll(x, 7, dims=-1) * ramp + 0.01 * ramp


@pytest.mark.parametrize("seconds", [0.01, 0.1, 3.0, 4.0, 4.0001, 5.5, 8.0, 8.00003, 9.0, 21.3, 40.0])
def test_chunking_matches_the_reference_loop(seconds):
    """Every branch of the reference loop: one zero-padded chunk, one reflect-padded chunk, border padding, a short
    zero-padded last chunk, many chunks."""
    n = int(round(seconds * 44100))
    x = torch.randn(2, n, generator=torch.Generator().manual_seed(n)) * 0.1
    model = _Standin()
    calls = []
    ours = vocals_44k(model, x, progress=lambda done, total: calls.append((done, total)))
    assert ours.shape == x.shape
    close(ours, reference_loop(model, x), f"{seconds} s")
    assert calls and calls[-1][0] == calls[-1][1] == len(calls)


@pytest.mark.parametrize("rate, channels, seconds", [(44100, 2, 2.5), (44100, 1, 0.1), (16000, 1, 2.5),
                                                     (48000, 2, 1.0), (16000, 2, 6.0)])
def test_separation_matches_the_oracle(shallow, shallow_reference, rate, channels, seconds):
    """Resampling, mono <-> stereo, one chunk (zero- or reflect-padded) and two overlapping chunks (6 s at 16 kHz)
    with the real model; border padding and many chunks are covered by the stand-in above."""
    wave = torch.randn(channels, int(seconds * rate), generator=torch.Generator().manual_seed(rate + channels)) * 0.1
    vocals, accompaniment = separate_vocals(shallow, wave[None], rate)
    assert vocals.shape == accompaniment.shape == wave.shape
    close(vocals, oracle_separation(shallow_reference, wave, rate), f"{rate} Hz x {channels}, {seconds} s")
    close(vocals + accompaniment, wave, "vocals + accompaniment")


def test_stems_sum_back_to_the_input(shallow):
    """accompaniment = input - vocals; the pair is adjusted so that the float32 sum gives the input back wherever
    float32 can hold it (every sample here)."""
    t = torch.arange(44100 * 2) / 44100
    wave = torch.stack([0.3 * torch.sin(2 * torch.pi * 220 * t), 0.2 * torch.sin(2 * torch.pi * 330 * t)])
    wave = (wave * 32768).round() / 32768  # 16-bit PCM, as LoadAudio gives from a wav
    vocals, accompaniment = separate_vocals(shallow, wave, 44100)
    assert torch.equal(vocals + accompaniment, wave)


def test_silence_and_a_tenth_of_a_second(shallow):
    silent = torch.zeros(1, 2, 4410)
    vocals, accompaniment = separate_vocals(shallow, silent, 44100)
    assert torch.equal(vocals, torch.zeros(2, 4410)) and torch.equal(accompaniment, torch.zeros(2, 4410))
    short = torch.randn(1, 1, 1600) * 0.1  # 0.1 s at 16 kHz
    vocals, accompaniment = separate_vocals(shallow, short, 16000)
    assert vocals.shape == (1, 1600) and torch.isfinite(vocals).all()


def test_cancel_stops_between_chunks(ours):
    class Cancelled(Exception):
        pass

    seen = []

    def interrupt():
        if seen:
            raise Cancelled
        seen.append(1)

    with pytest.raises(Cancelled):
        vocals_44k(_Standin(), torch.zeros(2, 44100 * 10), interrupt=interrupt)
    assert len(seen) == 1


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(1, 6, 4410), "6 channels; vocal separation takes mono or stereo"),
    (torch.zeros(1, 2, 0), "empty"),
    (torch.full((1, 2, 100), float("nan")), "NaN"),
])
def test_bad_audio_is_named(ours, bad, match):
    with pytest.raises(ValueError, match=match):
        separate_vocals(ours, bad, 44100)


def test_checkpoint_errors(tmp_path, weights):
    from infinitetalk_lipsync.pipeline.loading.errors import CheckpointError
    from safetensors.torch import save_file
    other = tmp_path / "wav2vec2.safetensors"
    save_file({"encoder.layer_norm.weight": torch.ones(4)}, str(other))
    with pytest.raises(CheckpointError, match="(?s)not a Mel-Band RoFormer model.*MelBandRoformer_fp16"):
        load_roformer(other)
    truncated = tmp_path / "MelBandRoformer_cut.safetensors"
    truncated.write_bytes(weights[0].read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="MelBandRoformer_cut"):
        load_roformer(truncated)
    sd = dict(weights[1])
    sd.pop("layers.3.1.layers.0.0.to_gates.bias")
    sd["layers.0.0.layers.0.0.temperature"] = torch.ones(1)
    with pytest.raises(CheckpointError, match="1 Mel-Band RoFormer tensors missing, 1 unexpected"):
        build(sd)
    with pytest.raises(FileNotFoundError):
        load_roformer(tmp_path / "missing.safetensors")


def test_fp32_file_loads_the_same(tmp_path, weights, ours):
    path = sf.write(tmp_path / "MelBandRoformer_fp32.safetensors", weights[1], torch.float32)
    model = load_roformer(path)
    for (k, a), b in zip(model.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), k
