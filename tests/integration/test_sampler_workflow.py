"""InfiniteTalkSampler in a real ComfyUI: LoadVideo -> GetVideoComponents -> InfiniteTalkSampler -> CreateVideo ->
SaveVideo; and the core Wan 2.1 VAE code against the official golden VAE cases.

The model is the real loader node on the golden tiny DiT; audio embeddings, CLIP vision and text come from test-only
stub nodes (sampler_stub_nodes/); the VAE is core's VAE wrapper and WanVAE code at dim 8 with the golden weights. The written mp4 must last exactly as long as the audio."""
import json

import numpy as np
import pytest

import golden
from audio_io import read_audio, write_pcm_wav
from comfyui_harness import PACK_FOLDER


def _duration(path):
    av = pytest.importorskip("av")
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        audio = c.streams.audio[0]
        frames = sum(1 for _ in c.decode(video=0))
        return frames, float(video.average_rate), float(audio.duration * audio.time_base)


def _source_video(path, frames=60, fps=30, size=48):
    """A short 30 fps clip (the shared 15 s 458x458 video takes ~30 s just to load on 2 CPU cores)."""
    av = pytest.importorskip("av")
    import numpy as np
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.full((size, size, 3), 40, np.uint8)
            img[:, :, 0] = (i * 4) % 256
            img[size // 4:3 * size // 4, size // 4:3 * size // 4, 1] = 200
            c.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(stream.encode())


def _workflow(server, prefix, seconds, sampler=None, extra=None, positive=("8", 0)):
    """LoadVideo -> GetVideoComponents -> InfiniteTalkSampler -> CreateVideo -> SaveVideo (+ SaveAudio), API format.
    InfiniteTalkModelLoader on the golden tiny DiT split into a base file and an InfiniteTalk file (the loader
    infers 1 head from dim 128, so the numbers are not the golden ones: this checks the plumbing and lengths)."""
    import loading_files as lf
    _source_video(server.input_dir / "source30.mp4")
    folder = server.models_dir / "diffusion_models"
    folder.mkdir(parents=True, exist_ok=True)
    base, audio = lf.split(lf.reference())
    lf.write_st(base, folder / "it_sampler_tiny_base.safetensors", prefix="model.diffusion_model.")
    lf.write_st(audio, folder / "it_sampler_tiny_infinitetalk.safetensors")
    text_dim = golden.case("a_dit_tiny")["config"]["text_dim"]
    model_node = {"class_type": "InfiniteTalkModelLoader", "inputs": {
        "model": "it_sampler_tiny_base.safetensors", "infinitetalk_model": "it_sampler_tiny_infinitetalk.safetensors",
        "base_precision": "fp32", "fp8_mode": "upcast (safe, any GPU)", "attention": "sdpa", "blocks_to_swap": 0}}
    original = _stereo_44k(golden.media("speech_1.wav"), server.input_dir / "speech44k.wav", seconds=3.0)
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "source30.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "LoadAudio", "inputs": {"audio": "speech44k.wav"}},
        "4": {"class_type": "ITTestAudioEmbeds", "inputs": {"audio": ["3", 0], "seconds": seconds}},
        "5": model_node,
        "6": {"class_type": "ITTestRandomWanVAE", "inputs": {}},
        "7": {"class_type": "ITTestTinyClipVision", "inputs": {}},
        "8": {"class_type": "ITTestConditioning", "inputs": {"seed": 0, "dim": text_dim}},
        "9": {"class_type": "ITTestConditioning", "inputs": {"seed": 1, "dim": text_dim}},
        "10": {"class_type": "InfiniteTalkSampler", "inputs": {
            "model": ["5", 0], "vae": ["6", 0], "clip_vision": ["7", 0], "positive": list(positive), "negative": ["9", 0],
            "audio_embeds": ["4", 0], "source": ["2", 0], "source_fps": ["2", 2], "steps": 1, "shift": 5.0,
            "cfg": 1.0, "audio_cfg": 2.0, "denoise": 1.0, "solver": "euler", "seed": 0, "colour_correction": 1.0,
            "resolution": "custom width/height", "width": 16, "height": 16, "window": 17, "motion_frames": 5,
            **(sampler or {})}},
        "11": {"class_type": "CreateVideo", "inputs": {"images": ["10", 0], "fps": ["10", 2], "audio": ["10", 1]}},
        "12": {"class_type": "SaveVideo", "inputs": {"video": ["11", 0], "filename_prefix": prefix,
                                                    "format": "mp4", "codec": "h264"}},
        "13": {"class_type": "SaveAudio", "inputs": {"audio": ["10", 1], "filename_prefix": f"{prefix}_sound"}},
        **(extra or {}),
    }
    entry = server.run(prompt, timeout=600)
    text = "\n".join(entry["outputs"]["10"]["text"])
    files = sorted(server.output_dir.rglob(f"{prefix}*.mp4"))
    assert files, f"no mp4 written; outputs: {entry['outputs']}"
    return text, files[-1], original


def test_video_to_lipsync_mp4_matches_audio_length(stub_server):
    seconds = 2.0
    text, path, original = _workflow(stub_server, "it_sampler", seconds)
    assert "16x16" in text and "V2V (60 frames @ 30 fps)" in text
    frames, fps, audio_s = _duration(path)
    assert fps == 25.0 and frames == round(seconds * 25)
    assert abs(audio_s - seconds) <= 1.5 / 25
    # The sampler's AUDIO is the user's 44.1 kHz stereo, untouched and exactly 50 frames long (flac: lossless).
    rate, sound = read_audio(next(stub_server.output_dir.rglob("it_sampler_sound*.flac")))
    assert rate == 44100 and sound.shape == (2, 50 * 1764)
    assert np.abs(sound - original[:, :50 * 1764]).max() < 2e-4


def _stereo_44k(speech, path, seconds):
    """A 44.1 kHz stereo 16-bit wav from the shared speech (right channel at half level); returns it [2, T] float."""
    av = pytest.importorskip("av")
    with av.open(str(speech)) as c:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=44100)
        mono = np.concatenate([f.to_ndarray().reshape(-1) for frame in c.decode(audio=0)
                               for f in resampler.resample(frame)])[:int(seconds * 44100)]
    return write_pcm_wav(path, np.stack([mono, 0.5 * mono]))


def _frames(path):
    av = pytest.importorskip("av")
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_official_exact_on_and_off_with_a_prompt_schedule(stub_server):
    """The sampler's faithfulness choices through a real ComfyUI, with two prompts scheduled over time (48x48 source
    resized by the official PIL rule to 16x16): official_exact on reports the official choices whatever the
    inputs say; off, the chosen ones; the videos differ by those choices."""
    seconds = 2.0
    text_dim = golden.case("a_dit_tiny")["config"]["text_dim"]
    extra = {"20": {"class_type": "ITTestConditioning", "inputs": {"seed": 2, "dim": text_dim}},
             "21": {"class_type": "InfiniteTalkPromptSchedule", "inputs": {
                 "prompt_1": ["8", 0], "prompt_2": ["20", 0], "starts": "0, 1", "unit": "seconds"}}}
    ours = {"colour_reference": "global anchor", "colour_method": "mkl", "audio_scale": 1.5,
            "two_speaker_null_audio": "silence both speakers"}
    runs = {}
    for exact in (True, False):
        text, path, _ = _workflow(stub_server, f"it_faithful_{exact}", seconds, {**ours, "official_exact": exact},
                                  extra, positive=("21", 0))
        assert "prompt 1 from window 0" in text and "prompt 2 from window 2" in text
        frames, fps, _ = _duration(path)
        assert fps == 25.0 and frames == round(seconds * 25)
        runs[exact] = (text, _frames(path))
    print("\n" + runs[True][0].splitlines()[1] + "\n" + runs[False][0].splitlines()[1])
    assert "official_exact ON" in runs[True][0] and "first frame (official)" in runs[True][0]
    assert "not in the official pipeline: audio_scale 1.5" in runs[True][0]
    assert "global anchor (official: first frame (official))" in runs[False][0]
    assert "mkl (official: lab mean/std (official))" in runs[False][0]
    assert (runs[True][1].astype(int) - runs[False][1].astype(int)).any()


def test_core_vae_through_our_adapter_matches_official_golden_cases(stub_server):
    """ComfyVAE (our adapter) around core's VAE wrapper and core's WanVAE code (dim 8, golden weights) reproduces the
    official WanVAE.encode/decode (latents normalised as the official wrapper)."""
    entry = stub_server.run({"1": {"class_type": "ITTestVAEAdapterCheck", "inputs": {"pack_module": PACK_FOLDER}}},
                            timeout=120)
    err = json.loads(entry["outputs"]["1"]["text"][0])
    print(f"\ncore VAE via ComfyVAE vs official (dim 8): {err}")
    assert max(err.values()) <= 1e-5, err
