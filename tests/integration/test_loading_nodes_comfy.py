"""The loader nodes inside a real ComfyUI: .gguf files are listed, LoRA chain -> model loader runs,
the report reaches the node, and a second identical run is served from ComfyUI's cache."""
import torch

import loading_files as lf


def _write_models(models_dir):
    ref = lf.reference()
    base, audio = lf.split(ref)
    (models_dir / "diffusion_models").mkdir(parents=True, exist_ok=True)
    (models_dir / "loras").mkdir(parents=True, exist_ok=True)
    lf.write_gguf(base, models_dir / "diffusion_models" / "wan2.1-i2v-14b-480p-Q8_0.gguf", lf.T.Q8_0)
    lf.write_st(audio, models_dir / "diffusion_models" / "Wan2_1-InfiniTetalk-Single_fp16.safetensors",
                dtype=torch.float16)
    lf.lora_file(base, models_dir / "loras" / "lightx2v_tiny.safetensors")


def test_loader_workflow(comfy_server):
    _write_models(comfy_server.models_dir)
    choices = comfy_server.object_info()["InfiniteTalkModelLoader"]["input"]["required"]["model"][0]
    assert "wan2.1-i2v-14b-480p-Q8_0.gguf" in choices
    prompt = {
        "1": {"class_type": "InfiniteTalkLoRA", "inputs": {"lora": "lightx2v_tiny.safetensors", "strength": 1.0}},
        "2": {"class_type": "InfiniteTalkModelLoader",
              "inputs": {"model": "wan2.1-i2v-14b-480p-Q8_0.gguf",
                         "infinitetalk_model": "Wan2_1-InfiniTetalk-Single_fp16.safetensors",
                         "base_precision": "fp32", "fp8_mode": "upcast (safe, any GPU)", "attention": "sdpa",
                         "blocks_to_swap": 0, "lora": ["1", 0], "lora_mode": "merge into weights (fast)"}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    entry = comfy_server.run(prompt, timeout=180)
    (text,) = entry["outputs"]["2"]["text"]
    assert "GGUF Q8_0" in text and "InfiniteTalk single" in text and "LoRA lightx2v_tiny.safetensors" in text
    loads = comfy_server.log().count("Linear weights:")
    assert loads >= 1, comfy_server.log()[-2000:]
    comfy_server.run(prompt, timeout=180)
    assert comfy_server.log().count("Linear weights:") == loads  # same inputs: cached, not reloaded
