"""Test-only ComfyUI nodes (installed beside the pack by test_sampler_workflow.py, never shipped): tiny stand-ins
for the inputs of InfiniteTalkSampler whose real providers are heavy or live in other nodes.

VAE: a REAL core ``comfy.sd.VAE`` built from the golden small Wan 2.1 VAE weights (core's ``WanVAE`` class at
base dim 8; the real dim 96 is far too slow on CPU), so the sampler's VAE adapter meets the true core interface
and numerics. CLIP vision: a core-shaped object (``patcher`` = a real ModelPatcher,
``model(pixel_values=..., intermediate_output=-2)``) around a tiny module."""
import importlib
import importlib.util
import json
import os
import sys

import torch

import comfy.ldm.wan.vae
import comfy.model_patcher
import comfy.sd
from safetensors.torch import load_file


class _TinyVision(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 1280)

    def forward(self, pixel_values, intermediate_output=None):
        x = torch.nn.functional.adaptive_avg_pool2d(pixel_values, 16).flatten(2).transpose(1, 2)  # [1,256,3]
        tokens = self.proj(x)
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)
        return tokens, tokens, None, None


class _ClipVision:
    def __init__(self):
        with torch.random.fork_rng():  # the same weights every time: reruns must give the same frames
            torch.manual_seed(0)
            self.model = _TinyVision()
        self.patcher = comfy.model_patcher.ModelPatcher(self.model, load_device=torch.device("cpu"),
                                                        offload_device=torch.device("cpu"))


def _node(returns, inputs, fn):
    cls = type("Node", (), {"RETURN_TYPES": returns, "FUNCTION": "go", "CATEGORY": "testing",
                            "INPUT_TYPES": classmethod(lambda c: {"required": inputs}), "go": fn})
    return cls


def small_core_vae(golden_dir: str) -> comfy.sd.VAE:
    """core's VAE wrapper built from the complete golden small Wan 2.1 VAE state dict (dim 8, the real key layout).

    Cores that size the Wan 2.1 VAE from its weights (0.8+: ``decoder.head.0.gamma``) build the small model
    themselves. 0.3.64 fixes dim 96 and refuses the small weights (size mismatch): there the wrapper is built from a
    complete dim-96 state dict of the same layout (zeros) and then given the small model, as its loader would."""
    small_sd = load_file(os.path.join(golden_dir, "vae_small_weights.safetensors"))
    try:
        return comfy.sd.VAE(sd=small_sd)
    except RuntimeError as e:  # "size mismatch for ...": this core builds dim 96 whatever the weights say
        if "size mismatch" not in str(e):
            raise
    with torch.device("meta"):
        layout = comfy.ldm.wan.vae.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                          temperal_downsample=[False, True, True]).state_dict()
    vae = comfy.sd.VAE(sd={k: torch.zeros(v.shape, dtype=v.dtype) for k, v in layout.items()})
    small = comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                     temperal_downsample=[False, True, True])
    small.load_state_dict(small_sd)
    vae.first_stage_model = small.eval().to(vae.vae_dtype)
    vae.patcher = comfy.model_patcher.ModelPatcher(small, load_device=vae.device, offload_device=vae.device)
    return vae


def _vae(self):
    return (small_core_vae(os.environ["IT_STUB_GOLDEN_DIR"]),)


class _FastVAE:
    """Core VAE interface (encode IMAGE [N,H,W,3] -> raw latent [1,16,t,h,w], decode back) around the pack's
    TinyCodec: for long-video runs, where core's WanVAE code (~20 s per 81-frame window on 2 CPU cores) would
    measure the VAE, not the streaming."""

    def __init__(self, pack_module):
        package = next(name for name in sys.modules if name.endswith("/" + pack_module))
        self.codec_module = importlib.import_module(package + ".pipeline.codec")
        standins = importlib.util.spec_from_file_location(  # tests/codec_standins.py: test-only, not in the pack
            "it_codec_standins", os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..",
                                              "codec_standins.py"))
        module = importlib.util.module_from_spec(standins)
        standins.loader.exec_module(module)
        self.codec = module.TinyCodec()
        self.first_stage_model = torch.nn.Linear(3, 16)  # what the sampler fingerprints for its resume key

    def encode(self, frames):
        return self.codec_module.denormalize_latent(self.codec.encode(frames[..., :3]))[None]

    def decode(self, latent):
        return self.codec.decode(self.codec_module.normalize_latent(latent[0]))[None]


def _fast_vae(self, pack_module):
    return (_FastVAE(pack_module),)


def _clip_vision(self):
    return (_ClipVision(),)


def _conditioning(self, seed, dim):
    return ([[torch.randn(1, 512, dim, generator=torch.Generator().manual_seed(seed)) * 0.1, {}]],)


def _pack_module(suffix):
    """The pack's module ``<package>.<suffix>`` (ComfyUI names the package after its folder path)."""
    return next(module for name, module in list(sys.modules.items()) if name.endswith("." + suffix))


def _audio_embeds(self, audio, seconds):
    """The pack's real AudioEmbeds with random features; its sound is the first ``seconds`` of ``audio`` as given."""
    rate = audio["sample_rate"]
    wave = audio["waveform"][0, :, :int(seconds * rate)].float()
    duration = wave.shape[-1] / rate
    frames = round(duration * 25.0)
    speakers = [torch.randn(frames, 12, 768, generator=torch.Generator().manual_seed(1)).mul_(0.1)]  # no 2nd copy
    AudioEmbeds = _pack_module("pipeline.audio.embeds").AudioEmbeds
    return (AudioEmbeds(speakers=speakers, fps=25.0, duration_s=duration, num_frames=frames, waveform=wave,
                        sample_rate=rate),)


def _vae_adapter_check(self, pack_module):
    """Errors of the pack's ComfyVAE adapter around small_core_vae against the official golden VAE cases."""
    # ComfyUI registers a custom-node package under its path (dots -> "_x_"), e.g. ".../custom_nodes/<folder>".
    package = next(name for name in sys.modules if name.endswith("/" + pack_module))
    ComfyVAE = importlib.import_module(package + ".nodes.adapters").ComfyVAE
    golden_dir = os.environ["IT_STUB_GOLDEN_DIR"]
    vae = ComfyVAE(small_core_vae(golden_dir))
    g = load_file(os.path.join(golden_dir, "vae_cases.safetensors"))
    err = {}
    with torch.no_grad():
        for v in ("v5", "v9"):
            frames = ((g[f"video.{v}"] + 1) / 2).permute(1, 2, 3, 0)  # [T,H,W,3] 0..1
            err[f"{v}.latent"] = (vae.encode(frames) - g[f"small.{v}.latent"]).abs().max().item()
            decoded = vae.decode(g[f"small.{v}.latent"]) * 2 - 1
            err[f"{v}.decoded"] = (decoded - g[f"small.{v}.decoded"].permute(1, 2, 3, 0)).abs().max().item()
    return {"ui": {"text": [json.dumps(err)]}, "result": ()}


def _memory_probe(self, model=None, wav2vec=None, after_frames=None, after_embeds=None):
    """Where ComfyUI's memory manager has our models: for each given INFINITETALK_* output, its identity, whether
    its weights are loaded and whether it is in comfy.model_management.current_loaded_models."""
    import comfy.model_management as mm
    registered = [entry.model for entry in mm.current_loaded_models]
    report = {"loaded_classes": [type(p.model).__name__ for p in registered if p is not None]}
    for name, value in (("model", model), ("wav2vec", wav2vec)):
        if value is not None:
            report[name] = {"id": id(value), "loaded": value.patcher.is_loaded(),
                            "registered": any(p is value.patcher for p in registered),
                            "size": value.patcher.model_size(), "ram": value.get_ram_usage()}
    return {"ui": {"text": [json.dumps(report)]}, "result": ()}


def _digest(self, images):
    import hashlib
    data = images.detach().float().cpu().contiguous().numpy().tobytes()
    return {"ui": {"text": [json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "shape": list(images.shape)})]},
            "result": ()}


_probe = type("Node", (), {"RETURN_TYPES": (), "FUNCTION": "go", "CATEGORY": "testing", "OUTPUT_NODE": True,
                           "INPUT_TYPES": classmethod(lambda c: {"required": {}, "optional": {
                               "model": ("INFINITETALK_MODEL",), "wav2vec": ("INFINITETALK_WAV2VEC",),
                               "after_frames": ("IMAGE",), "after_embeds": ("INFINITETALK_AUDIO_EMBEDS",)}}),
                           "IS_CHANGED": classmethod(lambda c, **kw: float("nan")), "go": _memory_probe})
_digest_node = _node((), {"images": ("IMAGE",)}, _digest)
_digest_node.OUTPUT_NODE = True

_check = _node((), {"pack_module": ("STRING", {"default": ""})}, _vae_adapter_check)
_check.OUTPUT_NODE = True

NODE_CLASS_MAPPINGS = {
    "ITTestVAEAdapterCheck": _check,
    "ITTestRandomWanVAE": _node(("VAE",), {}, _vae),
    "ITTestFastVAE": _node(("VAE",), {"pack_module": ("STRING", {"default": ""})}, _fast_vae),
    "ITTestTinyClipVision": _node(("CLIP_VISION",), {}, _clip_vision),
    "ITTestConditioning": _node(("CONDITIONING",), {"seed": ("INT", {"default": 0}), "dim": ("INT", {"default": 4096})},
                                _conditioning),
    "ITTestMemoryProbe": _probe,
    "ITTestDigest": _digest_node,
    "ITTestAudioEmbeds": _node(("INFINITETALK_AUDIO_EMBEDS",), {"audio": ("AUDIO",), "seconds": ("FLOAT", {"default": 3.0})},
                               _audio_embeds),
}
