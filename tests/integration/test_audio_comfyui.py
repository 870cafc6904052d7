"""Audio nodes in a real ComfyUI: LoadAudio / LoadVideo -> GetVideoComponents -> our encoder loader
(tiny wav2vec2 files written into models/wav2vec2 and models/audio_encoders) -> embeds node -> SaveAudio."""
import shutil

import numpy as np
import pytest
import torch

import wav2vec_files as wf
from audio_io import read_audio
from golden import shared_dir

pytest.importorskip("comfyui_harness", reason="integration harness (tests/integration/conftest.py) not merged yet")

HF_FOLDER = "tiny-chinese-wav2vec2-base"
SINGLE = "tiny-wav2vec2_fp16.safetensors"
CORE = "tiny-core-wav2vec2.safetensors"


@pytest.fixture(scope="module")
def server(comfy_server):
    models = comfy_server.models_dir
    wf.write_hf_folder(models / "wav2vec2" / HF_FOLDER, fmt="bin", do_normalize=True)
    wf.write_single_file(models / "wav2vec2" / SINGLE)
    wf.write_single_file(models / "audio_encoders" / CORE, prefix=False, pos_names="parametrizations",
                         dtype=torch.float32)
    return comfy_server


def media_file(server, name):
    root = shared_dir()
    source = None if root is None else root / "media" / name
    if source is None or not source.is_file():
        pytest.skip(f"shared/media/{name} not found")
    shutil.copyfile(source, server.input_dir / name)
    return name


def test_loader_lists_folders_and_files(server):
    info = server.object_info()["InfiniteTalkAudioEncoderLoader"]
    choices = info["input"]["required"]["model_name"][0]
    assert HF_FOLDER + "/" in choices and SINGLE in choices and CORE in choices
    assert not any(c.endswith(".json") for c in choices)


@pytest.mark.parametrize("model_name, normalization", [(HF_FOLDER + "/", "auto"), (SINGLE, "auto"), (CORE, "on")])
def test_load_audio_to_embeds(server, model_name, normalization):
    name = media_file(server, "speech_1.wav")
    prompt = {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": name}},
        "2": {"class_type": "InfiniteTalkAudioEncoderLoader",
              "inputs": {"model_name": model_name, "device": "main_device", "precision": "fp32",
                         "input_normalization": normalization}},
        "3": {"class_type": "InfiniteTalkAudioEmbeds",
              "inputs": {"wav2vec": ["2", 0], "audio": ["1", 0], "fps": 25.0, "start_time": 1.0, "end_time": 5.0}},
        "4": {"class_type": "SaveAudio", "inputs": {"audio": ["3", 1], "filename_prefix": "itk_audio"}},
    }
    entry = server.run(prompt, timeout=240)
    (text,) = entry["outputs"]["3"]["text"]
    assert text.startswith("4.00 s -> 100 frames (100 embedding rows)") and "LUFS" in text
    saved = entry["outputs"]["4"]["audio"][0]
    path = server.output_dir / saved.get("subfolder", "") / saved["filename"]
    # The sound output is speech_1.wav itself (44.1 kHz stereo, levels untouched) from 1 s, exactly 100 frames long.
    rate, sound = read_audio(path)
    _, original = read_audio(server.input_dir / name)
    assert rate == 44100 and sound.shape == (2, 100 * 1764)
    assert np.abs(sound - original[:, 44100:44100 + 100 * 1764]).max() < 2e-4


def test_video_audio_two_speakers(server):
    video = media_file(server, "ref_video.mp4")
    speech = media_file(server, "speech_1.wav")
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": video}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "LoadAudio", "inputs": {"audio": speech}},
        "4": {"class_type": "InfiniteTalkAudioEncoderLoader",
              "inputs": {"model_name": HF_FOLDER + "/", "device": "cpu", "precision": "fp32",
                         "input_normalization": "auto"}},
        "5": {"class_type": "InfiniteTalkAudioEmbeds",
              "inputs": {"wav2vec": ["4", 0], "audio": ["2", 1], "audio_2": ["3", 0], "multi_mode": "para",
                         "fps": ["2", 2], "start_time": 0.0, "end_time": 2.0}},
        "6": {"class_type": "SaveAudio", "inputs": {"audio": ["5", 1], "filename_prefix": "itk_mix"}},
    }
    entry = server.run(prompt, timeout=240)
    (text,) = entry["outputs"]["5"]["text"]
    assert text.startswith("2.00 s -> 50 frames") and text.count("LUFS") >= 2
