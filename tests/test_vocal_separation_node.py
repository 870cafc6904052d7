"""The InfiniteTalk Vocal Separation node outside ComfyUI (host falls back to plain torch; model names are paths)."""
import pytest
import torch

import separation_files as sf
from infinitetalk_lipsync.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from infinitetalk_lipsync.nodes.vocals import InfiniteTalkVocalSeparation


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    sd = sf.random_state_dict(seed=3, config=sf.small_config(depth=1))
    return str(sf.write(tmp_path_factory.mktemp("vs") / "MelBandRoformer_fp16.safetensors", sd))


def test_registered_with_tooltips():
    assert NODE_CLASS_MAPPINGS["InfiniteTalkVocalSeparation"] is InfiniteTalkVocalSeparation
    assert NODE_DISPLAY_NAME_MAPPINGS["InfiniteTalkVocalSeparation"] == "InfiniteTalk Vocal Separation"
    for name, (_, opts) in InfiniteTalkVocalSeparation.INPUT_TYPES()["required"].items():
        assert opts.get("tooltip"), name


def test_node_returns_vocals_and_accompaniment_at_the_input_format(model_file):
    wave = torch.randn(1, 1, 22050) * 0.1
    out = InfiniteTalkVocalSeparation().separate({"waveform": wave, "sample_rate": 22050}, model_file, "cpu")
    vocals, accompaniment = out["result"]
    assert vocals["sample_rate"] == accompaniment["sample_rate"] == 22050
    assert vocals["waveform"].shape == accompaniment["waveform"].shape == (1, 1, 22050)
    assert torch.allclose(vocals["waveform"] + accompaniment["waveform"], wave, atol=1e-7)
    assert out["ui"]["text"][0].startswith("1.00 s, 22050 Hz, 1 ch: 1 chunks")


def test_node_errors_name_the_input(model_file, tmp_path):
    node = InfiniteTalkVocalSeparation()
    with pytest.raises(ValueError, match="audio: expected an AUDIO value"):
        node.separate(torch.zeros(2, 100), model_file, "cpu")
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        node.separate({"waveform": torch.zeros(1, 1, 100), "sample_rate": 16000}, str(tmp_path / "nothing.safetensors"),
                      "cpu")
