"""The encoder module itself: chunked CNN vs the one-shot definition, lengths, real base sizes."""
import pytest
import torch
import torch.nn.functional as F

import wav2vec_files as wf
from infinitetalk_lipsync.pipeline.audio import Wav2Vec2Config, Wav2Vec2Encoder


def one_shot_cnn(model, x):
    """wav2vec2's feature encoder as defined: conv -> GroupNorm over the whole clip -> GELU, then conv -> GELU."""
    layers = model.feature_extractor.conv_layers
    y = x[:, None]
    for i, layer in enumerate(layers):
        y = layer.conv(y)
        if i == 0:
            y = layer.layer_norm(y)
        y = F.gelu(y)
    return y.transpose(1, 2)


@pytest.mark.parametrize("chunk", [2, 5, 1024])
def test_chunked_cnn_equals_one_shot(chunk, monkeypatch):
    model = wf.random_model()
    x = wf.speech_like(1.37)[0] * 3 + 0.05
    monkeypatch.setattr(model.feature_extractor, "chunk_steps", chunk)
    with torch.no_grad():
        expected = one_shot_cnn(model, x)
        actual = model.conv_features(x)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("samples", [400, 719, 720, 16000, 36800])
def test_step_count(samples):
    model = wf.random_model()
    with torch.no_grad():
        steps = model.conv_features(torch.randn(1, samples)).shape[1]
    assert steps == model.feature_extractor.num_steps(samples) == (samples - 400) // 320 + 1


def test_base_geometry_on_meta():
    with torch.device("meta"):
        model = Wav2Vec2Encoder(Wav2Vec2Config())
    assert model.receptive_field == 400 and model.feature_extractor.stride == 320
    assert len(model.encoder.layers) == 12
    out = model(torch.empty(1, 16000 * 4, device="meta"), 100)
    assert out.shape == (1, 100, 12, 768)
