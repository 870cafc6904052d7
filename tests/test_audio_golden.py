"""Parity with the official audio pipeline (golden case c_wav2vec_features), within 1e-4 relative."""
import numpy as np
import pytest
import torch

import golden
from infinitetalk_lipsync.pipeline.audio import Wav2Vec2Config, compute_audio_embeds, load_wav2vec2
from infinitetalk_lipsync.pipeline.audio.features import speech_tracks
from infinitetalk_lipsync.pipeline.audio.preprocess import (combine_speakers, integrated_loudness, loudness_normalize,
                                                             normalize_input, to_mono_16k)

FEATURES = "wav2vec_features.safetensors"
REL = 1e-4


def ref(name):
    return golden.tensors(FEATURES)[name]


@pytest.fixture(scope="module")
def model():
    path = golden.golden_dir() / "wav2vec_tiny_weights.safetensors"
    # A single file cannot tell the head count, and defaults to normalisation off; the golden case
    # ran with its config and do_normalize=True.
    config = Wav2Vec2Config.from_dict(golden.manifest()["files"]["wav2vec_tiny_weights.safetensors"]["config"])
    return load_wav2vec2(str(path), normalize_input=True, config=config)


def test_loudness_matches_official():
    case = golden.case("c_wav2vec_features")
    wave = ref("wave_16k").numpy()
    assert integrated_loudness(wave) == pytest.approx(case["loudness_in_lufs"], abs=1e-9)
    out, lufs = loudness_normalize(wave)
    assert out.dtype == np.float64 and lufs == pytest.approx(case["loudness_in_lufs"], abs=1e-9)
    golden.assert_close(torch.from_numpy(out), ref("wave_loudnorm"), REL, "wave_loudnorm")
    assert integrated_loudness(out) == pytest.approx(case["loudness_out_lufs"], abs=1e-6)


def test_input_normalisation_matches_feature_extractor():
    values = normalize_input(ref("wave_loudnorm").numpy())
    golden.assert_close(torch.from_numpy(values), ref("input_values"), REL, "input_values")


def test_resample_matches_librosa_soxr_hq():
    wave = ref("resample.wave_24k")
    out = to_mono_16k(wave, 24000)
    golden.assert_close(torch.from_numpy(out), ref("resample.wave_16k"), REL, "resample")


def test_encoder_stages(model):
    case = golden.case("c_wav2vec_features")
    with torch.no_grad():
        conv = model.conv_features(ref("input_values")[None])
        golden.assert_close(conv, ref("conv_features"), REL, "conv_features")
        assert conv.shape[1] == case["n_conv_frames"]
        interp = model.resample_steps(ref("conv_features"), case["seq_len"])
        golden.assert_close(interp, ref("interp_features"), REL, "interp_features")
        proj = model.feature_projection(ref("interp_features"))
        golden.assert_close(proj, ref("feature_projection"), REL, "feature_projection")
        out = model.encode_steps(ref("interp_features"))[0]
        golden.assert_close(out, ref("audio_embedding"), REL, "audio_embedding")


def test_full_pipeline_from_waveform(model):
    case = golden.case("c_wav2vec_features")
    embeds, report = compute_audio_embeds(model, [(ref("wave_16k")[None, None], case["sr"])], fps=25)
    assert len(embeds.speakers) == 1
    golden.assert_close(embeds.speakers[0], ref("audio_embedding"), REL, "embedding")
    assert embeds.speakers[0].dtype == torch.float32 and embeds.speakers[0].device.type == "cpu"
    assert embeds.duration_s == pytest.approx(case["duration_s"])
    assert embeds.num_frames == round(case["duration_s"] * 25)
    (track,), _, _, _ = speech_tracks([(ref("wave_16k")[None, None], case["sr"])])
    golden.assert_close(torch.from_numpy(track), ref("wave_loudnorm"), REL, "wav2vec2 waveform")
    # The video's sound is the input itself: no loudness gain.
    assert embeds.sample_rate == 16000 and torch.equal(embeds.waveform, ref("wave_16k")[None])
    assert report.loudness_lufs[0] == pytest.approx(case["loudness_in_lufs"])
    assert "frames" in report.text() and "LUFS" in report.text()


@pytest.mark.parametrize("mode", ["add", "para"])
def test_multi_speaker_tracks(mode):
    spec = golden.case("c_wav2vec_features")["multi"][mode]
    first, second = (loudness_normalize(ref(f"multi.wave_{name}").numpy())[0] for name in spec["inputs"])
    s1, s2 = combine_speakers(first, second, mode)
    assert len(s1) == spec["len1"] and len(s2) == spec["len2"]
    golden.assert_close(torch.from_numpy(s1), ref(f"multi_{mode}.speech1"), REL, f"{mode} speaker 1")
    golden.assert_close(torch.from_numpy(s2), ref(f"multi_{mode}.speech2"), REL, f"{mode} speaker 2")


@pytest.mark.parametrize("mode", ["add", "para"])
def test_multi_speaker_embeds(model, mode):
    spec = golden.case("c_wav2vec_features")["multi"][mode]
    waves = [ref(f"multi.wave_{name}") for name in spec["inputs"]]
    embeds, _ = compute_audio_embeds(model, [(w, 16000) for w in waves], mode=mode, fps=25)
    assert len(embeds.speakers) == 2
    for i in range(2):
        track = ref(f"multi_{mode}.speech{i + 1}").numpy()
        expected = model(torch.from_numpy(normalize_input(track))[None], int(len(track) / 16000 * 25))[0]
        golden.assert_close(embeds.speakers[i], expected, 1e-5, f"speaker {i + 1}")
    tracks, _, _, _ = speech_tracks([(w, 16000) for w in waves], mode)
    for i in range(2):
        golden.assert_close(torch.from_numpy(tracks[i]), ref(f"multi_{mode}.speech{i + 1}"), REL, f"track {i + 1}")
    # The video's sound: the inputs as given (no loudness gain), laid out like the tracks.
    a, b = waves
    size = max(a.numel(), b.numel())  # 'para': the shorter input (either one) is padded with silence
    pad = torch.nn.functional.pad
    raw = torch.cat([a, b]) if mode == "add" else pad(a, (0, size - a.numel())) + pad(b, (0, size - b.numel()))
    assert torch.allclose(embeds.waveform[0], raw, atol=1e-7)


@pytest.mark.parametrize("order", ["longer_first", "longer_last"])
def test_para_pads_unequal_lengths(model, order):
    """Deliberate difference (official 'para' requires equal lengths): whichever speaker is shorter is
    padded with trailing silence to the longer one's length; both embeddings and the duration follow the
    longer track. Holds for any two lengths, in either order."""
    a, b = ref("multi.wave_a"), ref("multi.wave_b")
    assert a.numel() != b.numel(), "the golden 'add' inputs have unequal lengths"
    waves = sorted([a, b], key=lambda w: -w.numel()) if order == "longer_first" else sorted([a, b], key=lambda w: w.numel())
    embeds, _ = compute_audio_embeds(model, [(w, 16000) for w in waves], mode="para", fps=25)
    size = max(a.numel(), b.numel())
    assert embeds.duration_s == pytest.approx(size / 16000)
    for i, wave in enumerate(waves):
        track = np.pad(loudness_normalize(wave.numpy())[0], (0, size - wave.numel()))
        expected = model(torch.from_numpy(normalize_input(track))[None], int(size / 16000 * 25))[0]
        golden.assert_close(embeds.speakers[i], expected, 1e-5, f"speaker {i + 1} ({order})")


def test_add_with_clip_shorter_than_loudness_block(model):
    """Official code raises here (pyloudnorm's 0.4 s block); we measure the short clip repeated."""
    spec = golden.case("c_wav2vec_features")["multi"]["add_short"]
    assert "block size" in spec["error"]
    short, first = ref("multi.wave_short").numpy(), ref("multi.wave_a")
    assert short.size < 0.4 * 16000 <= first.numel()
    embeds, report = compute_audio_embeds(model, [(first, 16000), (short, 16000)], mode="add")
    assert embeds.speakers[0].shape[0] == int((first.numel() + short.size) / 16000 * 25)
    gained = loudness_normalize(short)[0]
    # Heard on repeat, the normalised short clip sits at the target loudness.
    assert integrated_loudness(np.tile(gained, 10)) == pytest.approx(-23.0, abs=0.5)
    tracks, _, _, _ = speech_tracks([(first, 16000), (short, 16000)], "add")
    golden.assert_close(torch.from_numpy(tracks[1][first.numel():]), torch.from_numpy(gained), REL, "short clip gain")
