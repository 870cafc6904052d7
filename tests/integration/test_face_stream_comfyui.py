"""Face-only dubbing streamed in a real ComfyUI: LoadVideo -> InfiniteTalk Face Plan (video) -> sampler (source_video
+ face_plan) -> SaveVideo. Cancel mid-render, queue the same prompt again: it resumes and the full-resolution mp4's
frames equal an uninterrupted render's. Tiny models and the stub server of test_long_video_comfyui.py."""
import numpy as np

from test_long_video_comfyui import (RENDER_TIMEOUT, cancel_after, decoded, long_prompt, saved, server,  # noqa: F401
                                     tiny_models, write_clip, write_tone)  # (server: the fixture)

SIZE = (48, 64)  # write_clip's frames (h, w)


def face_prompt(clip, audio, seconds, prefix, **kw):
    prompt = long_prompt(clip, audio, seconds, prefix, **kw)
    prompt["2"] = {"class_type": "InfiniteTalkFacePlan", "inputs": {
        "video": ["1", 0], "width": 64, "height": 64, "padding": 0.4, "window": 0, "region": "lower_face",
        "detect_every": 5, "dilation": 2, "smoothing": 3, "feather": 3, "colour_match": "lab", "erode": 0,
        "box": "20,8,44,36"}}
    prompt["10"]["inputs"]["face_plan"] = ["2", 0]
    return prompt


def test_face_only_cancel_then_queue_again_resumes_with_identical_frames(server):
    tiny_models(server)
    write_clip(server.input_dir / "face_src.mp4")
    write_tone(server.input_dir / "face_tone.wav", 24)
    seconds = 24.0  # 600 frames: 9 windows of 81 with 9 motion frames
    reference = face_prompt("face_src.mp4", "face_tone.wav", seconds, "face/whole", resume=False, seed=5)
    entry = server.wait(server.queue(reference), RENDER_TIMEOUT)
    assert entry["status"]["status_str"] == "success", entry["status"]
    text = "\n".join(entry["outputs"]["10"]["text"])
    assert "face-only: the 64x64 face crop pasted back into the 64x48 frames" in text, text
    prompt = face_prompt("face_src.mp4", "face_tone.wav", seconds, "face/resumed", seed=5)
    entry = cancel_after(server, prompt, "window_00002.mp4")
    assert entry["status"]["status_str"] != "success", "the render finished before Cancel; make it longer"
    entry = server.wait(server.queue(prompt), RENDER_TIMEOUT)
    assert entry["status"]["status_str"] == "success", entry["status"]
    text = "\n".join(entry["outputs"]["10"]["text"])
    assert "resumed at window" in text, text
    whole, resumed = decoded(saved(server, "face/whole")), decoded(saved(server, "face/resumed"))
    assert whole.shape == resumed.shape == (600, *SIZE, 3)
    differ = [i for i in range(whole.shape[0]) if not np.array_equal(whole[i], resumed[i])]
    assert not differ, f"{len(differ)} frames differ, first {differ[:8]}: {text}"
    assert not any((server.output_dir / "infinitetalk_checkpoints").glob("*/checkpoint.pt"))
