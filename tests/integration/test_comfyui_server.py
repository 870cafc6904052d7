"""The pack inside a real ComfyUI: registered, imported cleanly, and the frame-count node runs on real audio."""
import shutil
import wave

import numpy as np
import pytest

from golden import shared_dir
from comfyui_harness import PACK_FOLDER

import infinitetalk_lipsync as pack
from infinitetalk_lipsync.pipeline.window_plan import frames_for_duration, plan_windows


def _speech_wav(folder):
    """shared/media/speech_1.wav copied into ComfyUI's input folder, or a synthetic 4.5 s tone."""
    root = shared_dir()
    source = None if root is None else root / "media" / "speech_1.wav"
    target = folder / "speech.wav"
    if source is not None and source.is_file():
        shutil.copyfile(source, target)
    else:
        rate = 16000
        t = np.arange(int(4.5 * rate)) / rate
        with wave.open(str(target), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
            w.writeframes((0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes())
    with wave.open(str(target)) as w:
        return target.name, w.getnframes() / w.getframerate()


def test_every_node_registered_without_import_errors(comfy_server):
    info = comfy_server.object_info()
    missing = sorted(set(pack.NODE_CLASS_MAPPINGS) - set(info))
    log = comfy_server.log()
    failed = [line for line in log.splitlines() if PACK_FOLDER in line and ("IMPORT FAILED" in line or "Cannot import" in line)]
    assert not missing and not failed, f"missing {missing}; {failed}\n{log[-3000:]}"
    assert f"custom_nodes/{PACK_FOLDER}" in log  # listed under "Import times for custom nodes"
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert info[name]["category"] == cls.CATEGORY
        assert info[name]["display_name"] == pack.NODE_DISPLAY_NAME_MAPPINGS[name]
    assert any(PACK_FOLDER in url and url.endswith(".js") for url in comfy_server.get("/extensions"))


@pytest.mark.parametrize("policy", ["cover audio", "fit inside audio"])
def test_frame_count_on_loaded_audio(comfy_server, policy):
    name, seconds = _speech_wav(comfy_server.input_dir)
    prompt = {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": name}},
        "2": {"class_type": "InfiniteTalkFrameCount",
              "inputs": {"audio": ["1", 0], "duration": 1.0, "fps": 25.0, "window": 81, "motion_frames": 9,
                         "policy": policy}},
    }
    entry = comfy_server.run(prompt, timeout=120)
    (text,) = entry["outputs"]["2"]["text"]
    frames = frames_for_duration(seconds, 25.0)
    if policy == "cover audio":
        expected = plan_windows([frames])
    else:
        expected = plan_windows([frames], num_frames=81 + (frames - 81) // 72 * 72)
    assert text.splitlines()[0].startswith(f"audio {seconds:.2f} s = {frames} frames at 25 fps; policy: {policy}")
    assert expected.summary() in text
    print(f"\n--- InfiniteTalk Frame Count on {name} ({seconds:.2f} s), {policy} ---\n{text}")


def test_bad_setting_reports_clear_error(comfy_server):
    prompt = {"1": {"class_type": "InfiniteTalkFrameCount",
                    "inputs": {"duration": 4.0, "fps": 25.0, "window": 17, "motion_frames": 21, "policy": "cover audio"}}}
    # Both values are inside the widgets' ranges (ComfyUI's own validation passes): our planner explains the clash.
    with pytest.raises(RuntimeError, match="motion frames=21 must be smaller than window=17"):
        comfy_server.run(prompt, timeout=60)


def test_pack_model_folders_registered(comfy_server):
    """wav2vec2 (also listing core audio_encoders) and sam2 are model folders of the running ComfyUI."""
    # The server is shared by the session: other tests put real model files in these folders too,
    # so use names of our own and check inclusion.
    files = {"wav2vec2/folder-check/model.safetensors", "audio_encoders/folder-check_fp16.safetensors",
             "sam2/folder-check.safetensors"}
    for name in files:
        path = comfy_server.models_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    try:
        assert {"wav2vec2", "sam2"} <= set(comfy_server.get("/models"))
        assert {"folder-check/model.safetensors", "folder-check_fp16.safetensors"} <= set(
            comfy_server.get("/models/wav2vec2"))
        assert "folder-check.safetensors" in comfy_server.get("/models/sam2")
    finally:
        for name in files:
            (comfy_server.models_dir / name).unlink()
