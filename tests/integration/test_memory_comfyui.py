"""Our models under ComfyUI's memory manager, in a real ComfyUI (--cpu): loaded through it, released by "Unload
models" (POST /free {"unload_models": true}), loaded again transparently on the next run with the same frames.

On the CPU, loading and unloading move no bytes (load and offload device are both the CPU), but the manager goes
through the same calls: the probe node (sampler_stub_nodes) reads comfy.model_management.current_loaded_models and
the patcher's own state. The DiT is the real loader on the golden tiny weights; wav2vec2 the real encoder loader on
a tiny file; the other sampler inputs come from the stub nodes."""
import json
import shutil
import time

import loading_files as lf
import wav2vec_files as wf
import golden

DIT_BASE, DIT_AUDIO, WAV2VEC = "it_mem_base.safetensors", "it_mem_infinitetalk.safetensors", "it_mem_wav2vec.safetensors"


def _models(srv):
    folder = srv.models_dir / "diffusion_models"
    folder.mkdir(parents=True, exist_ok=True)
    base, audio = lf.split(lf.reference())
    lf.write_st(base, folder / DIT_BASE, prefix="model.diffusion_model.")
    lf.write_st(audio, folder / DIT_AUDIO)
    (srv.models_dir / "wav2vec2").mkdir(parents=True, exist_ok=True)
    wf.write_single_file(srv.models_dir / "wav2vec2" / WAV2VEC)
    shutil.copyfile(golden.media("speech_1.wav"), srv.input_dir / "speech_mem.wav")


def _prompt(text_dim, seed=0):
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 8421504}},
        "3": {"class_type": "LoadAudio", "inputs": {"audio": "speech_mem.wav"}},
        "4": {"class_type": "ITTestAudioEmbeds", "inputs": {"audio": ["3", 0], "seconds": 1.0}},
        "5": {"class_type": "InfiniteTalkModelLoader", "inputs": {
            "model": DIT_BASE, "infinitetalk_model": DIT_AUDIO, "base_precision": "fp32",
            "fp8_mode": "upcast (safe, any GPU)", "attention": "sdpa", "blocks_to_swap": 1}},
        "6": {"class_type": "ITTestRandomWanVAE", "inputs": {}},
        "7": {"class_type": "ITTestTinyClipVision", "inputs": {}},
        "8": {"class_type": "ITTestConditioning", "inputs": {"seed": 0, "dim": text_dim}},
        "9": {"class_type": "ITTestConditioning", "inputs": {"seed": 1, "dim": text_dim}},
        "10": {"class_type": "InfiniteTalkSampler", "inputs": {
            "model": ["5", 0], "vae": ["6", 0], "clip_vision": ["7", 0], "positive": ["8", 0], "negative": ["9", 0],
            "audio_embeds": ["4", 0], "source": ["1", 0], "source_fps": 25.0, "steps": 2, "shift": 5.0,
            "cfg": 1.0, "audio_cfg": 2.0, "denoise": 1.0, "solver": "euler", "seed": seed, "colour_correction": 1.0,
            "resolution": "custom width/height", "width": 16, "height": 16, "window": 17, "motion_frames": 5}},
        "11": {"class_type": "ITTestDigest", "inputs": {"images": ["10", 0]}},
        "12": {"class_type": "InfiniteTalkAudioEncoderLoader", "inputs": {
            "model_name": WAV2VEC, "device": "main_device", "precision": "fp32", "input_normalization": "auto"}},
        "13": {"class_type": "InfiniteTalkAudioEmbeds", "inputs": {
            "wav2vec": ["12", 0], "audio": ["3", 0], "fps": 25.0, "start_time": 0.0, "end_time": 1.0}},
        "14": {"class_type": "ITTestMemoryProbe", "inputs": {
            "model": ["5", 0], "wav2vec": ["12", 0], "after_frames": ["10", 0], "after_embeds": ["13", 0]}},
    }


def _probe_only():
    prompt = _prompt(0)
    return {k: prompt[k] for k in ("5", "12")} | {
        "15": {"class_type": "ITTestMemoryProbe", "inputs": {"model": ["5", 0], "wav2vec": ["12", 0]}}}


def _text(entry, node):
    return json.loads(entry["outputs"][node]["text"][0])


def _probe_after_unload(srv):
    """The worker applies /free's flags after the prompt it is running, or right away when idle: probe until done."""
    for _ in range(20):
        time.sleep(0.5)
        probe = _text(srv.run(_probe_only(), timeout=120), "15")
        if not probe["model"]["registered"]:
            return probe
    raise AssertionError(f"our models stayed registered after /free unload_models: {probe}")


def test_unload_models_releases_our_models_and_the_next_run_reloads_them(stub_server):
    _models(stub_server)
    text_dim = golden.case("a_dit_tiny")["config"]["text_dim"]

    first = stub_server.run(_prompt(text_dim), timeout=600)
    probe = _text(first, "14")
    for name in ("model", "wav2vec"):  # loaded through the manager and listed by it
        assert probe[name]["loaded"] and probe[name]["registered"], probe
    assert {"InfiniteTalkDiT", "Wav2Vec2Encoder"} <= set(probe["loaded_classes"]), probe
    assert 0 < probe["model"]["size"] <= probe["model"]["ram"]  # the swapped block is RAM but not the model size
    frames = _text(first, "11")

    stub_server.free(unload_models=True)
    released = _probe_after_unload(stub_server)
    for name in ("model", "wav2vec"):
        assert not released[name]["loaded"] and not released[name]["registered"], released
        assert released[name]["id"] == probe[name]["id"]  # still cached by ComfyUI: only the memory was released
    assert not {"InfiniteTalkDiT", "Wav2Vec2Encoder"} & set(released["loaded_classes"]), released

    again = stub_server.run(_prompt(text_dim), timeout=600)  # the sampler runs again (the probe-only run dropped it)
    reloaded = _text(again, "14")
    assert reloaded["model"]["id"] == probe["model"]["id"]  # the same object, loaded again: no reload from disk
    assert reloaded["model"]["loaded"] and reloaded["model"]["registered"] and reloaded["wav2vec"]["loaded"]
    assert _text(again, "11") == frames  # bit-identical frames
    assert "memory leak" not in stub_server.log()
