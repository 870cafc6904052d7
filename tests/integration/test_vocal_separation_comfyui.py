"""Vocal separation in a real ComfyUI: LoadAudio -> InfiniteTalk Vocal Separation (small random Mel-Band RoFormer in
the real key layout) -> InfiniteTalk Audio Embeds (vocals for the embeddings, the original mix as the soundtrack)."""

import numpy as np
import pytest

import separation_files as sf
from audio_io import read_audio, write_pcm_wav
import wav2vec_files as wf
from golden import shared_dir

pytest.importorskip("comfyui_harness", reason="integration harness (tests/integration/conftest.py) not merged yet")

OURS = "it-small-melband.safetensors"
KIJAI = "MelBandRoformer_small_fp16.safetensors"  # where Kijai's node reads it: models/diffusion_models
W2V = "vs-tiny-wav2vec2_fp16.safetensors"


@pytest.fixture(scope="module")
def server(comfy_server):
    models = comfy_server.models_dir
    sd = sf.random_state_dict(seed=4, config=sf.small_config())
    sf.write(models / "vocal_separation" / OURS, sd)
    sf.write(models / "diffusion_models" / KIJAI, sd)
    sf.write(models / "diffusion_models" / "not_a_separator.safetensors", {"x": sd["layers.0.0.norm.gamma"]})
    wf.write_single_file(models / "wav2vec2" / W2V)
    return comfy_server


def _mix_wav(path, seconds=3.0):
    """The first seconds of shared/media/speech_1.wav (44.1 kHz stereo) plus a 440 Hz tone under it."""
    av = pytest.importorskip("av")
    root = shared_dir()
    if root is None or not (root / "media" / "speech_1.wav").is_file():
        pytest.skip("shared/media/speech_1.wav not found")
    with av.open(str(root / "media" / "speech_1.wav")) as c:
        planar = av.AudioResampler(format="fltp", layout="stereo", rate=44100)
        data = np.concatenate([f.to_ndarray() for frame in c.decode(audio=0) for f in planar.resample(frame)], axis=-1)
    data = data[:, :int(seconds * 44100)]
    data = data + 0.1 * np.sin(2 * np.pi * 440 * np.arange(data.shape[-1]) / 44100)
    return write_pcm_wav(path, data)


def _saved(server, entry, node):
    saved = entry["outputs"][node]["audio"][0]
    return read_audio(server.output_dir / saved.get("subfolder", "") / saved["filename"])


def test_model_list_has_our_folder_and_kijai_files_only(server):
    choices = server.object_info()["InfiniteTalkVocalSeparation"]["input"]["required"]["model_name"][0]
    assert OURS in choices and KIJAI in choices and "not_a_separator.safetensors" not in choices


def test_load_audio_separate_embed(server):
    original = _mix_wav(server.input_dir / "vs_mix.wav")
    prompt = {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": "vs_mix.wav"}},
        "2": {"class_type": "InfiniteTalkVocalSeparation", "inputs": {"audio": ["1", 0], "model_name": KIJAI,
                                                                       "device": "cpu"}},
        "3": {"class_type": "InfiniteTalkAudioEncoderLoader",
              "inputs": {"model_name": W2V, "device": "cpu", "precision": "fp32", "input_normalization": "on"}},
        "4": {"class_type": "InfiniteTalkAudioEmbeds",
              "inputs": {"wav2vec": ["3", 0], "audio": ["2", 0], "soundtrack": ["1", 0], "fps": 25.0,
                         "start_time": 0.5, "end_time": 0.0}},
        "5": {"class_type": "SaveAudio", "inputs": {"audio": ["4", 1], "filename_prefix": "vs_sound"}},
        "6": {"class_type": "SaveAudio", "inputs": {"audio": ["2", 0], "filename_prefix": "vs_vocals"}},
        "7": {"class_type": "SaveAudio", "inputs": {"audio": ["2", 1], "filename_prefix": "vs_accompaniment"}},
    }
    entry = server.run(prompt, timeout=600)
    (report,) = entry["outputs"]["2"]["text"]
    assert report.startswith("3.00 s, 44100 Hz, 2 ch: 1 chunks") and "on cpu" in report
    (text,) = entry["outputs"]["4"]["text"]
    assert text.startswith("2.50 s -> 62 frames")
    # The stems add up to the mix; the video's sound is the original mix from 0.5 s, 62 frames long.
    rate, vocals = _saved(server, entry, "6")
    _, accompaniment = _saved(server, entry, "7")
    assert rate == 44100 and vocals.shape == accompaniment.shape == original.shape
    assert np.abs(vocals + accompaniment - original).max() < 1e-3
    rate, sound = _saved(server, entry, "5")
    assert rate == 44100 and sound.shape == (2, 62 * 1764)
    assert np.abs(sound - original[:, 22050:22050 + 62 * 1764]).max() < 2e-4
