"""wav2vec2 checkpoint layouts (synthesised from the golden tiny weights with the real key names)."""
import json

import pytest
import torch
from safetensors.torch import save_file

import golden
import wav2vec_files as wf
from infinitetalk_lipsync.pipeline.audio import CheckpointError, Wav2Vec2Config, Wav2Vec2Encoder, load_wav2vec2
from infinitetalk_lipsync.pipeline.audio.wav2vec2_loading import canonical_keys, infer_config


def golden_config():
    return Wav2Vec2Config.from_dict(wf.golden_config())


def expected_params(dtype=torch.float32):
    """Golden tensors under our names, rounded through ``dtype`` as a file of that dtype stores them."""
    return {k: v.to(dtype).float() for k, v in canonical_keys(wf.golden_state_dict(), "golden").items()}


def assert_params(model, dtype=torch.float32):
    expected = expected_params(dtype)
    state = model.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key].float(), value), key


def run(model):
    """Golden input -> embedding, to compare with the official one."""
    values = golden.tensors("wav2vec_features.safetensors")["input_values"]
    with torch.no_grad():
        return model(values[None], golden.case("c_wav2vec_features")["seq_len"])[0]


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
def test_hf_folder(tmp_path, fmt):
    folder = wf.write_hf_folder(tmp_path / "chinese-wav2vec2-base", fmt=fmt, do_normalize=True)
    model = load_wav2vec2(str(folder))
    assert model.normalize_input is True and model.config.num_attention_heads == wf.golden_config()["num_attention_heads"]
    assert_params(model)
    golden.assert_close(run(model), golden.tensors("wav2vec_features.safetensors")["audio_embedding"], 1e-4)


@pytest.mark.parametrize("do_normalize, expected", [(False, False), (None, False)])
def test_hf_folder_normalisation_flag(tmp_path, do_normalize, expected):
    folder = wf.write_hf_folder(tmp_path / "w2v", fmt="safetensors", do_normalize=do_normalize)
    assert load_wav2vec2(str(folder)).normalize_input is expected
    assert load_wav2vec2(str(folder), normalize_input=True).normalize_input is True


@pytest.mark.parametrize("name", ["pytorch_model.bin", "config.json"])
def test_file_inside_hf_folder_means_the_folder(tmp_path, name):
    folder = wf.write_hf_folder(tmp_path / "w2v", fmt="bin", do_normalize=True)
    model = load_wav2vec2(str(folder / name))
    assert model.normalize_input is True and model.config.num_attention_heads == wf.golden_config()["num_attention_heads"]


@pytest.mark.parametrize("prefix, pos_names", [(True, "legacy"), (False, "parametrizations"), (True, "parametrizations"),
                                               (False, "legacy")])
def test_single_file_fp16(tmp_path, prefix, pos_names):
    path = wf.write_single_file(tmp_path / "wav2vec2-chinese-base_fp16.safetensors", prefix=prefix, pos_names=pos_names)
    model = load_wav2vec2(str(path), config=golden_config())
    assert model.normalize_input is False
    assert next(model.parameters()).dtype == torch.float32
    assert_params(model, torch.float16)


def test_single_file_folded_weight_norm(tmp_path):
    path = wf.write_single_file(tmp_path / "folded.safetensors", dtype=torch.float32, pos_names="folded")
    model = load_wav2vec2(str(path), config=golden_config())
    sd = wf.golden_state_dict()
    expected = torch._weight_norm(sd[wf.POS + "weight_v"], sd[wf.POS + "weight_g"], 2)
    conv = model.encoder.pos_conv_embed.conv
    actual = conv.weight_v * (conv.weight_g / conv.weight_v.norm(dim=(0, 1), keepdim=True))
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-7)


def test_infer_config_from_tensors():
    inferred = infer_config(canonical_keys(wf.golden_state_dict(), "golden"), "golden")
    reference = golden_config()
    for field in ("hidden_size", "num_hidden_layers", "intermediate_size", "conv_dim", "conv_kernel", "conv_stride",
                  "conv_bias", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "feat_extract_norm"):
        assert getattr(inferred, field) == getattr(reference, field), field


def test_infer_config_real_base_shapes():
    with torch.device("meta"):
        model = Wav2Vec2Encoder(Wav2Vec2Config())
    sd = {"wav2vec2." + k: v for k, v in model.state_dict().items()}
    assert infer_config(canonical_keys(sd, "base"), "base") == Wav2Vec2Config()
    # transformers' Wav2Vec2Model (base): 211 tensors, 94 371 712 values, incl. masked_spec_embed [768].
    assert len(sd) == 210 and sum(v.numel() for v in sd.values()) == 94_371_712 - 768


def test_matches_transformers_current_save_format(tmp_path):
    """Independent reference: a transformers Wav2Vec2Model saved today (parametrizations names)."""
    transformers = pytest.importorskip("transformers")
    config = wf.golden_config()
    torch.manual_seed(0)
    reference = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**{
        k: config[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                               "conv_dim", "conv_kernel", "conv_stride", "conv_bias", "feat_extract_norm",
                               "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "do_stable_layer_norm")})).eval()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    model = load_wav2vec2(str(path), config=golden_config())
    wave = torch.randn(1, 8000)
    with torch.no_grad():
        expected = torch.stack(reference(wave, output_hidden_states=True).hidden_states[1:], dim=2)
        actual = model(wave, expected.shape[1])  # same length: the interpolation is the identity
    golden.assert_close(actual, expected, 1e-5, "vs transformers")


def test_precision_and_device(tmp_path):
    path = wf.write_single_file(tmp_path / "w.safetensors")
    model = load_wav2vec2(str(path), dtype=torch.bfloat16, config=golden_config())
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_missing_tensor_names_the_file(tmp_path):
    sd = wf.golden_state_dict()
    last = wf.golden_config()["num_hidden_layers"] - 1
    del sd[f"wav2vec2.encoder.layers.{last}.attention.q_proj.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match=rf"broken\.safetensors.*missing.*layers\.{last}\.attention\.q_proj\.weight"):
        load_wav2vec2(str(path), config=golden_config())


def test_shape_mismatch_names_tensor(tmp_path):
    folder = wf.write_hf_folder(tmp_path / "w2v", fmt="safetensors")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] += 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*intermediate_dense\.weight"):
        load_wav2vec2(str(folder))


def test_foreign_file(tmp_path):
    path = tmp_path / "dit.safetensors"
    save_file({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(CheckpointError, match="not a wav2vec2 checkpoint"):
        load_wav2vec2(str(path))


def test_large_layout_rejected(tmp_path):
    sd = {"encoder.layer_norm.weight": torch.zeros(1024), "feature_projection.projection.weight": torch.zeros(1024, 512)}
    path = tmp_path / "large.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match="wav2vec2-large"):
        load_wav2vec2(str(path))
    with pytest.raises(ValueError, match="do_stable_layer_norm"):
        Wav2Vec2Config.from_dict({"do_stable_layer_norm": True, "feat_extract_norm": "layer"})


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_wav2vec2(str(tmp_path / "nope.safetensors"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        load_wav2vec2(str(tmp_path / "empty"))


def test_unreadable_bin(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match=r"junk\.bin"):
        load_wav2vec2(str(path))
