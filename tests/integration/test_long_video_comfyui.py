"""Long videos in a real ComfyUI: LoadVideo (VIDEO) -> InfiniteTalkSampler (source_video, streamed) -> SaveVideo on
minutes of audio; Cancel mid-render, queue the same prompt again -> it resumes and the mp4's frames equal an
uninterrupted render's. Tiny models as in test_sampler_workflow.py (real loader on the golden tiny DiT, core VAE code
at dim 8, stub CLIP vision / text / audio embeddings)."""
import time

import numpy as np
import pytest

import golden
from comfyui_harness import ENABLE_HINT, PACK_FOLDER, find_comfyuis, stub_comfy_server

av = pytest.importorskip("av")
RATE = 16000
RENDER_TIMEOUT = 900  # s: a render of the resume tests (1000 frames)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The stub server (stub_comfy_server) of the first ComfyUI found only (these renders take minutes), with one
    torch thread: the tiny models' small ops run ~10x faster than with threads fighting over 2 busy CI cores."""
    installs = find_comfyuis()
    if not installs:
        pytest.skip(ENABLE_HINT)
    with stub_comfy_server(installs[0], tmp_path_factory.mktemp("comfyui_long"), OMP_NUM_THREADS="1") as srv:
        yield srv


def write_clip(path, seconds=8.0, fps=30, size=(48, 64)):
    """A moving-gradient clip with an AAC track (the sampler must not use it: the audio comes from the embeds)."""
    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width, s.pix_fmt = h, w, "yuv420p"
        yy, xx = np.mgrid[:h, :w]
        for i in range(int(seconds * fps)):
            img = np.stack([(xx * 4 + i) % 256, (yy * 5) % 256, np.full_like(xx, (i * 3) % 256)], -1).astype(np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))


def write_tone(path, seconds):
    """A mono 16 kHz WAV (speech is not needed: the stub embeds are random)."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = (0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2).astype(np.float32)
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = RATE
        c.mux(s.encode(frame))
        c.mux(s.encode(None))


def tiny_models(srv, name="it_long"):
    import loading_files as lf
    folder = srv.models_dir / "diffusion_models"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / f"{name}_base.safetensors").exists():
        base, audio = lf.split(lf.reference())
        lf.write_st(base, folder / f"{name}_base.safetensors", prefix="model.diffusion_model.")
        lf.write_st(audio, folder / f"{name}_infinitetalk.safetensors")


def long_prompt(clip, audio, seconds, prefix, *, resume=True, window=81, motion=9, seed=0, name="it_long"):
    """API-format workflow: LoadVideo -> sampler(source_video) -> SaveVideo (the sampler's VIDEO output)."""
    text_dim = golden.case("a_dit_tiny")["config"]["text_dim"]
    return {
        "1": {"class_type": "LoadVideo", "inputs": {"file": clip}},
        "3": {"class_type": "LoadAudio", "inputs": {"audio": audio}},
        "4": {"class_type": "ITTestAudioEmbeds", "inputs": {"audio": ["3", 0], "seconds": seconds}},
        "5": {"class_type": "InfiniteTalkModelLoader", "inputs": {
            "model": f"{name}_base.safetensors", "infinitetalk_model": f"{name}_infinitetalk.safetensors",
            "base_precision": "fp32", "fp8_mode": "upcast (safe, any GPU)", "attention": "sdpa", "blocks_to_swap": 0}},
        "6": {"class_type": "ITTestFastVAE", "inputs": {"pack_module": PACK_FOLDER}},
        "7": {"class_type": "ITTestTinyClipVision", "inputs": {}},
        "8": {"class_type": "ITTestConditioning", "inputs": {"seed": 0, "dim": text_dim}},
        "9": {"class_type": "ITTestConditioning", "inputs": {"seed": 1, "dim": text_dim}},
        "10": {"class_type": "InfiniteTalkSampler", "inputs": {
            "model": ["5", 0], "vae": ["6", 0], "clip_vision": ["7", 0], "positive": ["8", 0], "negative": ["9", 0],
            "audio_embeds": ["4", 0], "source_video": ["1", 0], "source_fps": 25.0, "steps": 1, "shift": 5.0,
            "cfg": 1.0, "audio_cfg": 2.0, "denoise": 1.0, "solver": "euler", "seed": seed, "colour_correction": 1.0,
            "resolution": "custom width/height", "width": 16, "height": 16, "window": window,
            "motion_frames": motion, "resume": resume}},
        "12": {"class_type": "SaveVideo", "inputs": {"video": ["10", 3], "filename_prefix": prefix,
                                                    "format": "mp4", "codec": "h264"}},
    }


def cancel_after(srv, prompt, window_file):
    """Queue ``prompt``, press Cancel once a render checkpoint holds ``window_file`` (a few windows done); the
    cancelled run's /history entry."""
    prompt_id = srv.queue(prompt)
    checkpoints = srv.output_dir / "infinitetalk_checkpoints"
    deadline = time.monotonic() + 600
    while not list(checkpoints.glob(f"*/{window_file}")):
        assert time.monotonic() < deadline, srv.log()[-3000:]
        time.sleep(0.05)
    srv.interrupt()
    return srv.wait(prompt_id, RENDER_TIMEOUT)


def decoded(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def saved(srv, prefix):
    files = sorted(srv.output_dir.glob(prefix + "*.mp4"))
    assert files, srv.log()[-3000:]
    return files[-1]


def test_loadvideo_to_savevideo_for_minutes_of_audio(server):
    tiny_models(server)
    write_clip(server.input_dir / "long_src.mp4")
    write_tone(server.input_dir / "long_tone.wav", 150)
    seconds = 150.0
    entry = server.run(long_prompt("long_src.mp4", "long_tone.wav", seconds, "long/minutes"), timeout=1500)
    text = "\n".join(entry["outputs"]["10"]["text"])
    assert "streamed" in text and "V2V (240 frames @ 30 fps" in text, text
    path = saved(server, "long/minutes")
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.frames == round(seconds * 25) and v.average_rate == 25 and (v.width, v.height) == (16, 16)
        assert v.codec_context.name == "h264" and v.pix_fmt == "yuv420p"
        assert abs(float(a.duration * a.time_base) - seconds) < 1.5 / 25
    assert not any((server.output_dir / "infinitetalk_checkpoints").glob("*/checkpoint.pt"))


def test_cancel_then_queue_again_resumes_with_identical_frames(server):
    tiny_models(server)
    write_clip(server.input_dir / "resume_src.mp4")
    write_tone(server.input_dir / "resume_tone.wav", 40)
    seconds = 40.0  # 1000 frames: 14 windows of 81 with 9 motion frames
    reference = long_prompt("resume_src.mp4", "resume_tone.wav", seconds, "resume/whole", resume=False, seed=5)
    server.wait(server.queue(reference), RENDER_TIMEOUT)
    prompt = long_prompt("resume_src.mp4", "resume_tone.wav", seconds, "resume/resumed", seed=5)
    entry = cancel_after(server, prompt, "window_00003.mp4")
    assert entry["status"]["status_str"] != "success", "the render finished before Cancel; make it longer"
    checkpoints = server.output_dir / "infinitetalk_checkpoints"
    assert list(checkpoints.glob("*/checkpoint.pt"))
    entry = server.wait(server.queue(prompt), RENDER_TIMEOUT)
    assert entry["status"]["status_str"] == "success", entry["status"]
    text = "\n".join(entry["outputs"]["10"]["text"])
    assert "resumed at window" in text, text
    whole, resumed = decoded(saved(server, "resume/whole")), decoded(saved(server, "resume/resumed"))
    assert whole.shape == resumed.shape == (1000, 16, 16, 3)
    differ = [i for i in range(whole.shape[0]) if not np.array_equal(whole[i], resumed[i])]
    assert not differ, f"{len(differ)} frames differ, first {differ[:8]}, last {differ[-3:]}: {text}"
    assert not any(checkpoints.glob("*/checkpoint.pt"))
