"""Workflows run end to end in a real ComfyUI with tiny models.

Face-only dubbing, the whole path (issue 7): LoadVideo (a generated clip with
a sound track) -> GetVideoComponents -> InfiniteTalk Face Mask (typed box, ellipse: no SAM2, no OpenCV) ->
InfiniteTalk Face Crop -> InfiniteTalk Sampler (the real model loader on the golden tiny DiT; VAE, CLIP vision, text
and audio embeddings from the sampler test's stub nodes) -> InfiniteTalk Face Paste -> CreateVideo -> SaveVideo.

The mp4 lasts exactly as long as the audio used; the pasted frames, saved losslessly as PNG, equal the source
frames bit for bit outside the mask and its feather, and differ inside it.

The example workflows (example_workflows/*.json) converted to the API format as the frontend queues them, with
the heavy loaders swapped for the same tiny stand-ins, sizes shrunk and media replaced: their wiring runs."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import golden
import workflow_check as wc
from client.ui_to_api import ui_to_api
from infinitetalk_lipsync.pipeline.mask.face_mask import face_masks
from infinitetalk_lipsync.pipeline.mask.regions import dilate
from test_sampler_workflow import _duration

av = pytest.importorskip("av")
Image = pytest.importorskip("PIL.Image")

SIZE, FPS, FRAMES = 96, 25, 30
BOX = "30,24,66,72"  # the "face" drawn by _write_clip
FEATHER, DILATION = 4, 2
SECONDS = 1.0  # audio used: 25 frames, two windows of 17 frames with 5 motion frames


def _write_clip(path):
    """30 frames of a textured background with a face-like blob, plus a 440 Hz mono AAC track (1.2 s)."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    face = ((yy - 48) / 24.0) ** 2 + ((xx - 48) / 18.0) ** 2 <= 1
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "0"})
        video.width = video.height = SIZE
        video.pix_fmt = "yuv444p"
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for t in range(FRAMES):
            frame = np.roll(background, t, axis=1)
            frame[face] = (200, 150, 120 + 2 * t)
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * FRAMES / FPS)) / 16000)).astype(np.float32)
        for start in range(0, tone.size, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="flt", layout="mono")
            chunk.sample_rate = 16000
            container.mux(audio.encode(chunk))
        container.mux(audio.encode())
        container.mux(video.encode())


def _saved(srv, entry, node):
    files = entry["outputs"][node]["images"]
    return np.stack([np.array(Image.open(srv.output_dir / f["subfolder"] / f["filename"]).convert("RGB"))
                     for f in files])


def _assert_only_the_face_changed(pasted, source):
    """[T,H,W,3] frames: equal to the source bit for bit outside BOX's face mask and its feather, regenerated
    inside it."""
    box = tuple(float(v) for v in BOX.split(","))
    mask, _, _ = face_masks(torch.zeros(len(pasted), SIZE, SIZE, 3), box=box, region="face", dilation=DILATION,
                            smoothing=1)
    outside = (dilate(mask, FEATHER + 1) == 0).numpy()
    assert outside.mean() > 0.5
    assert np.array_equal(pasted[outside], source[outside])  # bit-identical outside mask + feather
    inside = (mask > 0.99).numpy()
    assert np.abs(pasted.astype(int) - source.astype(int))[inside].mean() > 5  # the face was regenerated


@pytest.fixture(scope="module")
def tiny_models(stub_server):
    """The golden tiny DiT as a base + InfiniteTalk file pair, and a LoRA over it, in the server's model folders."""
    import loading_files as lf
    models = stub_server.models_dir
    folder = models / "diffusion_models"
    folder.mkdir(parents=True, exist_ok=True)
    base, audio = lf.split(lf.reference())
    lf.write_st(base, folder / "it_face_tiny_base.safetensors", prefix="model.diffusion_model.")
    lf.write_st(audio, folder / "it_face_tiny_infinitetalk.safetensors")
    (models / "loras").mkdir(parents=True, exist_ok=True)
    lf.lora_file(base, models / "loras" / "it_tiny_lora.safetensors")
    import separation_files as sf  # a small Mel-Band RoFormer in the real key layout (the V2V example separates)
    (models / "vocal_separation").mkdir(parents=True, exist_ok=True)
    sf.write(models / "vocal_separation" / VOCALS, sf.random_state_dict(seed=3, config=sf.small_config()))
    return stub_server


def test_face_only_dubbing_full_path(stub_server, tiny_models):
    _write_clip(stub_server.input_dir / "face_clip.mp4")
    text_dim = golden.case("a_dit_tiny")["config"]["text_dim"]
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "face_clip.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "InfiniteTalkFaceMask", "inputs": {
            "images": ["2", 0], "region": "face", "dilation": DILATION, "smoothing": 1, "detect_every": 5,
            "box": BOX}},
        "4": {"class_type": "InfiniteTalkFaceCrop", "inputs": {
            "images": ["2", 0], "width": 64, "height": 64, "padding": 0.6, "window": 0, "region": "face",
            "detect_every": 5, "mask": ["3", 0]}},
        "5": {"class_type": "ITTestAudioEmbeds", "inputs": {"audio": ["2", 1], "seconds": SECONDS}},
        "6": {"class_type": "InfiniteTalkModelLoader", "inputs": {
            "model": "it_face_tiny_base.safetensors", "infinitetalk_model": "it_face_tiny_infinitetalk.safetensors",
            "base_precision": "fp32", "fp8_mode": "upcast (safe, any GPU)", "attention": "sdpa", "blocks_to_swap": 0}},
        "7": {"class_type": "ITTestRandomWanVAE", "inputs": {}},
        "8": {"class_type": "ITTestTinyClipVision", "inputs": {}},
        "9": {"class_type": "ITTestConditioning", "inputs": {"seed": 0, "dim": text_dim}},
        "10": {"class_type": "ITTestConditioning", "inputs": {"seed": 1, "dim": text_dim}},
        "11": {"class_type": "InfiniteTalkSampler", "inputs": {
            "model": ["6", 0], "vae": ["7", 0], "clip_vision": ["8", 0], "positive": ["9", 0], "negative": ["10", 0],
            "audio_embeds": ["5", 0], "source": ["4", 0], "source_fps": ["2", 2], "steps": 1, "shift": 5.0,
            "cfg": 1.0, "audio_cfg": 2.0, "denoise": 1.0, "solver": "euler", "seed": 0, "colour_correction": 1.0,
            "resolution": "custom width/height", "width": 16, "height": 16, "window": 17, "motion_frames": 5}},
        "12": {"class_type": "InfiniteTalkFacePaste", "inputs": {
            "images": ["11", 0], "crop_info": ["4", 1], "source_images": ["2", 0], "mask": ["3", 0],
            "feather": FEATHER, "colour_match": "lab", "erode": 0}},
        "13": {"class_type": "CreateVideo", "inputs": {"images": ["12", 0], "fps": ["11", 2], "audio": ["11", 1]}},
        "14": {"class_type": "SaveVideo", "inputs": {"video": ["13", 0], "filename_prefix": "face_dub/clip",
                                                     "format": "mp4", "codec": "h264"}},
        "15": {"class_type": "SaveImage", "inputs": {"images": ["12", 0], "filename_prefix": "face_dub/pasted"}},
        "16": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "face_dub/source"}},
    }
    entry = stub_server.run(prompt, timeout=600)
    text = "\n".join(entry["outputs"]["11"]["text"])
    assert "V2V (30 frames @ 25 fps)" in text and "16x16" in text and "2 windows" in text, text

    frames = round(SECONDS * FPS)
    videos = sorted((stub_server.output_dir / "face_dub").glob("clip*.mp4"))
    assert videos, entry["outputs"]
    count, fps, audio_s = _duration(videos[-1])
    assert (count, fps) == (frames, FPS)
    assert abs(audio_s - SECONDS) <= 1.5 / FPS

    pasted, source = _saved(stub_server, entry, "15"), _saved(stub_server, entry, "16")
    assert pasted.shape == (frames, SIZE, SIZE, 3) and source.shape == (FRAMES, SIZE, SIZE, 3)
    _assert_only_the_face_changed(pasted, source[:frames])


EXAMPLES = Path(__file__).resolve().parents[2] / "example_workflows"


def test_face_only_api_workflow_streams(tiny_models):
    """The face-only example as exported (API format: LoadVideo -> Face Plan (video) -> sampler with source_video
    and face_plan -> SaveVideo) with tiny models: the mp4 is full resolution with the audio's length, and the
    sampler's frames (saved losslessly as PNG) equal the source bit for bit outside the mask and its feather."""
    import json
    srv = tiny_models
    _write_clip(srv.input_dir / "face_clip.mp4")
    shutil.copyfile(golden.media("speech_1.wav"), srv.input_dir / "speech.wav")
    lora = "it_tiny_lora_face_api.safetensors"
    shutil.copyfile(srv.models_dir / "loras" / "it_tiny_lora.safetensors", srv.models_dir / "loras" / lora)
    api = json.loads((EXAMPLES / "api" / "infinitetalk_face_only_dubbing.json").read_text())
    prompt = _shrink(api, golden.case("a_dit_tiny")["config"]["text_dim"],
                     {"LoadVideo": "face_clip.mp4", "LoadAudio": "speech.wav"}, lora)
    ids = {v["class_type"]: k for k, v in prompt.items()}
    plan, sampler, load = (prompt[ids[k]]["inputs"] for k in ("InfiniteTalkFacePlan", "InfiniteTalkSampler",
                                                               "LoadVideo"))
    plan.update(feather=FEATHER, dilation=DILATION, smoothing=1, region="face")
    prompt["90"] = {"class_type": "SaveImage", "inputs": {"images": [ids["InfiniteTalkSampler"], 0],
                                                          "filename_prefix": "face_api/pasted"}}
    prompt["91"] = {"class_type": "GetVideoComponents", "inputs": {"video": [ids["LoadVideo"], 0]}}
    prompt["92"] = {"class_type": "SaveImage", "inputs": {"images": ["91", 0], "filename_prefix": "face_api/source"}}
    entry = srv.run(prompt, timeout=600)
    text = "\n".join(entry["outputs"][ids["InfiniteTalkSampler"]]["text"])
    assert "streamed" in text and "2 windows" in text, text
    assert "face from the typed box" in entry["outputs"][ids["InfiniteTalkFacePlan"]]["text"][0]
    frames = round(SECONDS * FPS)
    prefix = prompt[ids["SaveVideo"]]["inputs"]["filename_prefix"]
    videos = sorted(srv.output_dir.glob(prefix + "*.mp4"))
    assert videos, entry["outputs"]
    count, fps, audio_s = _duration(videos[-1])
    assert (count, fps) == (frames, FPS) and abs(audio_s - SECONDS) <= 1.5 / FPS
    with av.open(str(videos[-1])) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (SIZE, SIZE)
    pasted, source = _saved(srv, entry, "90"), _saved(srv, entry, "92")
    assert pasted.shape == (frames, SIZE, SIZE, 3)
    _assert_only_the_face_changed(pasted, source[:frames])


VOCALS = "it-small-melband.safetensors"


def _shrink(prompt: dict, text_dim: int, media: dict, lora: str) -> dict:
    """Swap the example's heavy loaders for the tiny stand-ins, keeping every link of the graph."""
    seeds = iter(range(100))
    for node_id, node in list(prompt.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind in ("CLIPLoader", "InfiniteTalkAudioEncoderLoader"):
            del prompt[node_id]
        elif kind == "CLIPTextEncode":
            prompt[node_id] = {"class_type": "ITTestConditioning", "inputs": {"seed": next(seeds), "dim": text_dim}}
        elif kind == "CLIPVisionLoader":
            prompt[node_id] = {"class_type": "ITTestTinyClipVision", "inputs": {}}
        elif kind == "VAELoader":
            prompt[node_id] = {"class_type": "ITTestRandomWanVAE", "inputs": {}}
        elif kind == "InfiniteTalkAudioEmbeds":
            prompt[node_id] = {"class_type": "ITTestAudioEmbeds", "inputs": {"audio": inputs["audio"], "seconds": SECONDS}}
        elif kind == "InfiniteTalkModelLoader":
            inputs.update(model="it_face_tiny_base.safetensors", infinitetalk_model="it_face_tiny_infinitetalk.safetensors",
                          base_precision="fp32")
        elif kind == "InfiniteTalkLoRA":
            inputs["lora"] = lora
        elif kind == "InfiniteTalkVocalSeparation":
            inputs.update(model_name=VOCALS, device="cpu")
        elif kind == "InfiniteTalkSampler":
            inputs.update(steps=1, resolution="custom width/height", width=16, height=16, window=17, motion_frames=5)
        elif kind == "InfiniteTalkFaceMask":
            inputs["box"] = BOX  # the automatic detector needs OpenCV, which ComfyUI's python may lack
        elif kind == "InfiniteTalkFaceCrop":
            inputs.update(width=64, height=64)
        elif kind == "InfiniteTalkFacePlan":
            inputs.update(width=64, height=64, box=BOX)
        elif kind in ("LoadVideo", "LoadAudio", "LoadImage"):
            key = {"LoadVideo": "file", "LoadAudio": "audio", "LoadImage": "image"}[kind]
            inputs[key] = media[kind]
        elif kind == "SaveVideo":
            inputs["filename_prefix"] = "examples/" + inputs["filename_prefix"].replace("/", "_")
    return prompt


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.json")))
def test_example_workflow_runs_with_tiny_models(tiny_models, name):
    srv = tiny_models
    _write_clip(srv.input_dir / "face_clip.mp4")
    shutil.copyfile(golden.media("speech_1.wav"), srv.input_dir / "speech.wav")
    Image.fromarray(np.full((SIZE, SIZE, 3), 128, np.uint8)).save(srv.input_dir / "still.png")
    media = {"LoadVideo": "face_clip.mp4", "LoadAudio": "speech.wav", "LoadImage": "still.png"}
    # A LoRA file of its own per workflow: the loader really runs (on ComfyUI 0.8+ a node served from the cache has
    # no report in /history) and its report names this file.
    lora = f"it_tiny_lora_{name.replace(' ', '_')}.safetensors"
    shutil.copyfile(srv.models_dir / "loras" / "it_tiny_lora.safetensors", srv.models_dir / "loras" / lora)
    workflow = wc.load(EXAMPLES / f"{name}.json")
    prompt = _shrink(ui_to_api(workflow, srv.object_info()), golden.case("a_dit_tiny")["config"]["text_dim"], media,
                     lora)
    entry = srv.run(prompt, timeout=600)
    ids = {v["class_type"]: k for k, v in prompt.items()}
    text = "\n".join(entry["outputs"][ids["InfiniteTalkSampler"]]["text"])
    assert ("I2V" if "i2v" in name.lower() else "V2V") in text and "2 model calls per step" in text, text
    assert "WARNING" not in text  # the example's settings suit its step-distill LoRA
    assert f"LoRA {lora}" in entry["outputs"][ids["InfiniteTalkModelLoader"]]["text"][0]
    prefix = prompt[ids["SaveVideo"]]["inputs"]["filename_prefix"]
    videos = sorted(srv.output_dir.glob(prefix + "*.mp4"))
    assert videos, entry["outputs"]
    count, fps, audio_s = _duration(videos[-1])
    assert (count, fps) == (round(SECONDS * FPS), FPS) and abs(audio_s - SECONDS) <= 1.5 / FPS
