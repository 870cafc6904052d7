"""The video's sound (issue 10 §3): the user's original audio, not the 16 kHz mono wav2vec2 copy.

Original rate and channels, untouched levels, the embeddings' crop and speaker layout, exactly as long as the
frames; the sampler's AUDIO output reads it through AudioEmbeds.output_sound."""
import numpy as np
import pytest
import torch

import wav2vec_files as wf
from infinitetalk_lipsync.nodes.audio import InfiniteTalkAudioEmbeds, Wav2VecHandle
from infinitetalk_lipsync.pipeline.audio import compute_audio_embeds
from infinitetalk_lipsync.pipeline.audio.preprocess import resample
from infinitetalk_lipsync.pipeline.sampler import loop
from sampler_fakes import audio_embeds


@pytest.fixture(scope="module")
def model():
    return wf.random_model()


def _stereo(seconds, rate, seed=0):
    return wf.speech_like(seconds, rate, 2, seed)[0]  # [2, T]


def test_44k_stereo_comes_out_44k_stereo_untouched_and_frame_aligned(model):
    wave = _stereo(1.3, 44100)
    embeds, _ = compute_audio_embeds(model, [(wave[None], 44100)], fps=25.0, start_s=0.2, end_s=1.11)
    assert embeds.num_frames == 23  # round(0.91 s * 25): the last frame outlasts the crop
    assert embeds.sample_rate == 44100 and torch.equal(embeds.waveform, wave[:, 8820:48951])
    sound, rate = embeds.output_sound()
    assert rate == 44100 and sound.shape == (2, 23 * 1764)  # 1764 samples per 25 fps frame at 44.1 kHz
    assert torch.equal(sound[:, :40131], wave[:, 8820:48951]) and not sound[:, 40131:].any()
    shorter, _ = embeds.output_sound(20)
    assert torch.equal(shorter, wave[:, 8820:8820 + 20 * 1764])


@pytest.mark.parametrize("fps", [25.0, 30.0, 23.976])
def test_sound_length_matches_frames_at_any_fps(model, fps):
    embeds, _ = compute_audio_embeds(model, [(_stereo(1.0, 48000)[None], 48000)], fps=fps)
    sound, rate = embeds.output_sound()
    assert rate == 48000 and sound.shape[-1] == round(embeds.num_frames * 48000 / fps)


def test_two_speakers_add_at_full_quality(model):
    """44.1 kHz stereo then 16 kHz mono: 44.1 kHz stereo, speaker 2 upsampled and copied to both channels,
    starting where its embeddings start (16000 samples at 16 kHz = 44100 samples)."""
    first, second = _stereo(1.0, 44100), wf.speech_like(0.5, 16000, 1, seed=1)[0]
    embeds, _ = compute_audio_embeds(model, [(first, 44100), (second, 16000)], mode="add", fps=25.0)
    assert embeds.sample_rate == 44100 and embeds.waveform.shape == (2, 66150)
    assert torch.equal(embeds.waveform[:, :44100], first)
    up = torch.from_numpy(resample(second.numpy(), 16000, 44100))
    assert torch.allclose(embeds.waveform[:, 44100:], up.expand(2, -1), atol=0)


def test_two_speakers_para_sum_without_loudness_gain(model):
    a, b = _stereo(1.0, 48000), _stereo(0.6, 48000, seed=2)
    embeds, _ = compute_audio_embeds(model, [(a, 48000), (b, 48000)], mode="para", fps=25.0, start_s=0.1)
    mix = a + torch.nn.functional.pad(b, (0, 48000 - b.shape[-1]))
    assert embeds.sample_rate == 48000 and torch.allclose(embeds.waveform, mix[:, 4800:], atol=1e-7)


def test_soundtrack_replaces_the_speech_in_the_video(model):
    speech = wf.speech_like(1.2, 16000, 1)[0]
    full_mix = _stereo(1.2, 44100, seed=3)
    embeds, _ = compute_audio_embeds(model, [(speech, 16000)], fps=25.0, start_s=0.4, soundtrack=(full_mix, 44100))
    assert embeds.sample_rate == 44100 and torch.equal(embeds.waveform, full_mix[:, 17640:])


def test_soundtrack_errors_name_the_input(model):
    with pytest.raises(ValueError, match="soundtrack: .*NaN"):
        compute_audio_embeds(model, [(wf.speech_like(1.0)[0], 16000)],
                             soundtrack=(torch.full((2, 100), float("nan")), 44100))


def test_embeds_node_audio_output_is_the_soundtrack():
    handle = Wav2VecHandle(wf.random_model(), torch.device("cpu"), torch.device("cpu"), "tiny")
    mix = {"waveform": _stereo(1.0, 44100, seed=4)[None], "sample_rate": 44100}
    out = InfiniteTalkAudioEmbeds().embed(handle, {"waveform": wf.speech_like(1.0), "sample_rate": 16000},
                                          25.0, 0.0, 0.0, soundtrack=mix)
    audio = out["result"][1]
    assert audio["sample_rate"] == 44100 and torch.equal(audio["waveform"], mix["waveform"])


def test_sampler_outputs_the_original_sound_trimmed_to_its_frames(monkeypatch):
    """loop.run: the AUDIO output is AudioEmbeds.output_sound for the frames made (44.1 kHz stereo here)."""
    embeds = audio_embeds([30])
    embeds.waveform, embeds.sample_rate = torch.randn(2, 60000), 44100
    frames = torch.zeros(30, 8, 8, 3)

    class _Plan:
        num_frames, windows = 30, []

    monkeypatch.setattr(loop, "validate", lambda job: None)
    monkeypatch.setattr(loop, "make_plan", lambda job: _Plan())
    monkeypatch.setattr(loop, "sample", lambda *a, **k: iter(()))
    job = loop.Job(context=None, context_null=None, audio=embeds, source=type("S", (), {"th": 8, "tw": 8})())
    out_frames, audio, fps = loop.run(None, None, None, job)
    assert out_frames.shape == frames.shape and fps == 25.0
    assert audio["sample_rate"] == 44100 and audio["waveform"].shape == (1, 2, 30 * 1764)
    assert torch.equal(audio["waveform"][0], embeds.waveform[:, :30 * 1764])
