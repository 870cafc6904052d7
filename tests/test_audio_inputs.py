"""Odd and bad audio inputs: each gives a correct result or one clear error."""
import logging

import numpy as np
import pytest
import soxr
import torch

import wav2vec_files as wf
from infinitetalk_lipsync.pipeline.audio import compute_audio_embeds
from infinitetalk_lipsync.pipeline.audio.preprocess import integrated_loudness, to_mono_16k


@pytest.fixture(scope="module")
def model():
    return wf.random_model()


def embed(model, *audios, **kwargs):
    return compute_audio_embeds(model, list(audios), **kwargs)


def test_silence_skips_normalisation_with_warning(model, caplog):
    with caplog.at_level(logging.WARNING, logger="infinitetalk_lipsync"):
        embeds, report = embed(model, (torch.zeros(1, 1, 16000), 16000))
    assert "normalisation skipped" in caplog.text
    assert report.loudness_lufs == [float("-inf")] and "silent" in report.text()
    assert torch.count_nonzero(embeds.waveform) == 0
    assert embeds.speakers[0].shape[0] == 25 and torch.isfinite(embeds.speakers[0]).all()


def test_clip_shorter_than_loudness_block(model):
    embeds, report = embed(model, (wf.speech_like(0.2), 16000))
    assert embeds.speakers[0].shape[0] == 5 and embeds.num_frames == 5
    assert np.isfinite(report.loudness_lufs[0])
    tiled = np.tile(embeds.waveform[0].numpy(), 20)
    assert integrated_loudness(tiled) == pytest.approx(-23.0, abs=0.5)


def test_too_short_for_one_frame(model):
    with pytest.raises(ValueError, match=r"speaker 1 audio: 0\.020 s of audio is too short"):
        embed(model, (wf.speech_like(0.02), 16000))


def test_nan_samples(model):
    wave = wf.speech_like(1.0)
    wave[0, 0, 100] = float("nan")
    with pytest.raises(ValueError, match="speaker 1 audio: 1 samples are NaN"):
        embed(model, (wave, 16000))


def test_empty_waveform(model):
    with pytest.raises(ValueError, match="speaker 1 audio: the waveform is empty"):
        embed(model, (torch.zeros(1, 1, 0), 44100))


def test_batch_of_clips_rejected(model):
    with pytest.raises(ValueError, match="batch of 2"):
        embed(model, (torch.zeros(2, 1, 16000), 16000))


@pytest.mark.parametrize("rate", [0, -8000, "abc"])
def test_bad_sample_rate(model, rate):
    with pytest.raises(ValueError, match="sample_rate"):
        embed(model, (wf.speech_like(1.0), rate))


@pytest.mark.parametrize("rate, channels", [(8000, 1), (48000, 2), (44100, 5), (22050, 1)])
def test_any_rate_and_channel_count(model, rate, channels):
    wave = wf.speech_like(1.3, rate=rate, channels=channels)
    track = to_mono_16k(wave, rate)
    expected = soxr.resample(wave[0].numpy().mean(axis=0), rate, 16000, "soxr_hq")
    assert track.dtype == np.float32 and track.shape == (int(np.ceil(wave.shape[-1] * 16000 / rate)),)
    n = min(len(track), len(expected))
    np.testing.assert_array_equal(track[:n], expected[:n])
    embeds, _ = embed(model, (wave, rate))
    assert embeds.duration_s == pytest.approx(1.3, abs=1e-3) and embeds.speakers[0].shape == (32, 2, 32)
    # The video's sound is the input as given: its own rate and channels.
    assert embeds.sample_rate == rate and torch.equal(embeds.waveform, wave[0])


def test_mono_1d_and_numpy_inputs(model):
    wave = wf.speech_like(0.5)
    a, _ = embed(model, (wave, 16000))
    b, _ = embed(model, (wave[0, 0].numpy(), 16000))
    torch.testing.assert_close(a.speakers[0], b.speakers[0], rtol=0, atol=0)


@pytest.mark.parametrize("fps", [25.0, 30.0, 24.0, 16.0, 29.97])
def test_any_fps(model, fps):
    embeds, _ = embed(model, (wf.speech_like(2.0), 16000), fps=fps)
    assert embeds.speakers[0].shape[0] == int(32000 / 16000 * fps)
    assert embeds.num_frames == round(2.0 * fps) and embeds.fps == fps


def test_bad_fps_and_speaker_count(model):
    wave = (wf.speech_like(1.0), 16000)
    with pytest.raises(ValueError, match="fps"):
        embed(model, wave, fps=0)
    with pytest.raises(ValueError, match="1 or 2 speakers"):
        embed(model, wave, wave, wave)
    with pytest.raises(ValueError, match="mode"):
        embed(model, wave, wave, mode="mix")


def test_crop(model):
    wave = wf.speech_like(3.0)
    full, _ = embed(model, (wave, 16000))
    cropped, _ = embed(model, (wave, 16000), start_s=0.5, end_s=2.0)
    assert cropped.duration_s == pytest.approx(1.5) and cropped.speakers[0].shape[0] == 37
    # Loudness is measured on the whole input, so the crop is a slice of the full processed audio.
    torch.testing.assert_close(cropped.waveform, full.waveform[:, 8000:32000], rtol=0, atol=0)
    past_end, _ = embed(model, (wave, 16000), start_s=1.0, end_s=99.0)
    assert past_end.duration_s == pytest.approx(2.0)
    with pytest.raises(ValueError, match="leave no audio"):
        embed(model, (wave, 16000), start_s=3.5)
    with pytest.raises(ValueError, match="start_time"):
        embed(model, (wave, 16000), start_s=-1.0)


def test_second_speaker_silent_track(model):
    """Official 'None' second speaker = zeros; here: a silent AUDIO, para mode."""
    wave = wf.speech_like(1.0)
    embeds, report = embed(model, (wave, 16000), (torch.zeros(1, 1, 16000), 16000), mode="para")
    single, _ = embed(model, (wave, 16000))
    torch.testing.assert_close(embeds.speakers[0], single.speakers[0], rtol=0, atol=0)
    assert len(embeds.speakers) == 2 and report.loudness_lufs[1] == float("-inf")


def test_audio_embeds_contract_checks():
    from infinitetalk_lipsync.pipeline.audio import AudioEmbeds

    rows = torch.zeros(10, 2, 4)
    common = dict(fps=25.0, duration_s=0.4, num_frames=10, waveform=torch.zeros(1, 6400), sample_rate=16000)
    with pytest.raises(ValueError, match="1 or 2 speakers"):
        AudioEmbeds(speakers=[rows] * 3, **common)
    with pytest.raises(ValueError, match="same number of frames"):
        AudioEmbeds(speakers=[rows, rows[:9]], **common)


def test_report_never_says_silence_was_normalised(model):
    """A silent input is left unchanged: the report must not also claim '-> -23 LUFS' for it."""
    _, silent = embed(model, (torch.zeros(1, 1, 16000), 16000))
    assert "-23" not in silent.text() and "silent, left unchanged" in silent.text()
    _, both = embed(model, (wf.speech_like(1.0), 16000), (torch.zeros(1, 1, 16000), 16000), mode="para")
    text = both.text()
    assert "speaker 1" in text and "-> -23 LUFS" in text.split("speaker 2")[0]
    assert "-23" not in text.split("speaker 2")[1] and "silent, left unchanged" in text.split("speaker 2")[1]
