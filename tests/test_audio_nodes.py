"""The audio nodes outside ComfyUI (host falls back to plain torch; model names are paths)."""
import pytest
import torch

import wav2vec_files as wf
from infinitetalk_lipsync import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from infinitetalk_lipsync.nodes.audio import (InfiniteTalkAudioEmbeds, InfiniteTalkAudioEncoderLoader, Wav2VecHandle,
                                              checkpoint_choices)
from infinitetalk_lipsync.pipeline.audio import AudioEmbeds

NODES = ("InfiniteTalkAudioEncoderLoader", "InfiniteTalkAudioEmbeds")


@pytest.mark.parametrize("name", NODES)
def test_registered_with_tooltips(name):
    cls = NODE_CLASS_MAPPINGS[name]
    assert NODE_DISPLAY_NAME_MAPPINGS[name].startswith("InfiniteTalk ")
    assert cls.CATEGORY.startswith("InfiniteTalk/")
    for group in cls.INPUT_TYPES().values():
        for key, spec in group.items():
            assert spec[1].get("tooltip"), f"{name}.{key} has no tooltip"


def test_checkpoint_choices():
    files = ["wav2vec2-chinese-base_fp16.safetensors", "chinese-wav2vec2-base/config.json",
             "chinese-wav2vec2-base/pytorch_model.bin", "chinese-wav2vec2-base/preprocessor_config.json",
             "notes.json", "sub/other.pt"]
    assert checkpoint_choices(files) == ["chinese-wav2vec2-base/", "sub/other.pt",
                                         "wav2vec2-chinese-base_fp16.safetensors"]


def speech_audio(seconds, rate=44100, channels=2):
    return {"waveform": wf.speech_like(seconds, rate, channels), "sample_rate": rate}


def test_loader_and_embeds_node(tmp_path):
    folder = wf.write_hf_folder(tmp_path / "chinese-wav2vec2-base", fmt="safetensors", do_normalize=True)
    (handle,) = InfiniteTalkAudioEncoderLoader().load(str(folder) + "/", "cpu", "fp16", "auto")
    assert isinstance(handle, Wav2VecHandle) and handle.model.normalize_input is True
    assert next(handle.model.parameters()).dtype == torch.float32  # CPU always computes in fp32
    out = InfiniteTalkAudioEmbeds().embed(handle, speech_audio(1.0), 25.0, 0.0, 0.0,
                                          audio_2=speech_audio(0.5, 16000, 1), multi_mode="add")
    embeds, audio, frames = out["result"]
    assert isinstance(embeds, AudioEmbeds) and len(embeds.speakers) == 2
    layers = handle.model.config.num_hidden_layers
    assert embeds.speakers[0].shape == (37, layers, handle.model.config.hidden_size)
    assert frames == embeds.num_frames == 38  # 1.5 s * 25 fps
    # The video's sound keeps the best input quality (44.1 kHz stereo) and lasts exactly 38 frames.
    assert audio["sample_rate"] == 44100 and audio["waveform"].shape == (1, 2, 38 * 44100 // 25)
    assert "1.50 s -> 38 frames" in out["ui"]["text"][0]


def test_loader_single_file_normalisation_choices(tmp_path):
    path = wf.write_single_file(tmp_path / "w.safetensors")
    loader = InfiniteTalkAudioEncoderLoader()
    assert loader.load(str(path), "cpu", "fp32", "auto")[0].model.normalize_input is False
    assert loader.load(str(path), "cpu", "fp32", "on")[0].model.normalize_input is True


def test_embeds_node_rejects_non_audio():
    handle = Wav2VecHandle(wf.random_model(), torch.device("cpu"), torch.device("cpu"), "tiny")
    with pytest.raises(ValueError, match="audio_2: expected an AUDIO"):
        InfiniteTalkAudioEmbeds().embed(handle, speech_audio(1.0), 25.0, 0.0, 0.0, audio_2=torch.zeros(3))


def test_embeds_node_without_audio_track():
    handle = Wav2VecHandle(wf.random_model(), torch.device("cpu"), torch.device("cpu"), "tiny")
    with pytest.raises(ValueError, match="audio: no audio arrived"):
        InfiniteTalkAudioEmbeds().embed(handle, None, 25.0, 0.0, 0.0)


def test_embeds_node_honours_cancel_inside_the_encoder(tmp_path, monkeypatch):
    """Cancel is checked throughout the wav2vec2 CNN and every transformer layer, not only before the work."""
    from infinitetalk_lipsync.nodes import audio as audio_node

    folder = wf.write_hf_folder(tmp_path / "w2v", fmt="safetensors", do_normalize=True)
    (handle,) = InfiniteTalkAudioEncoderLoader().load(str(folder) + "/", "cpu", "fp32", "auto")
    calls = []

    class Cancelled(Exception):
        pass

    def cancel_later(limit):
        def check():
            calls.append(1)
            if len(calls) >= limit:
                raise Cancelled
        return check

    monkeypatch.setattr(audio_node.host, "throw_if_interrupted", cancel_later(10 ** 9))
    InfiniteTalkAudioEmbeds().embed(handle, speech_audio(1.0, 16000, 1), 25.0, 0.0, 0.0)
    per_run = len(calls)
    layers = handle.model.config.num_hidden_layers
    assert per_run >= layers + len(handle.model.feature_extractor.conv_layers)
    calls.clear()
    monkeypatch.setattr(audio_node.host, "throw_if_interrupted", cancel_later(per_run - layers // 2))
    with pytest.raises(Cancelled):  # a cancel arriving during the transformer stops it there
        InfiniteTalkAudioEmbeds().embed(handle, speech_audio(1.0, 16000, 1), 25.0, 0.0, 0.0)
