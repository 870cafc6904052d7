"""Loader nodes: the InfiniteTalk DiT (base Wan 2.1 I2V 14B + InfiniteTalk adapter, any format)
and a chainable LoRA selector.

The DiT is loaded into CPU RAM and handed to ComfyUI's memory manager (``managed_model``): it goes to the GPU
before its first forward, is offloaded by "Unload models" or when another model needs the room, and comes back
before the next forward. The loaded model is cached by ComfyUI's output cache (same inputs -> no reload) and
freed when the cache drops it ("Free model and node cache"): the INFINITETALK_MODEL object owns the only
reference to the weights.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from . import host
from .managed_model import ManagedOutput, PackPatcher, load_before_forward, streamed_bytes
from ..pipeline.dit.attention import BACKENDS
from ..pipeline.loading import block_swap, load_dit
from ..pipeline.loading.load import dit_config
from ..pipeline.parallel.layout import choose_world
from ..pipeline.parallel.pool import load_parallel_dit

FOLDER = "infinitetalk_dit"
GPUS = ["1", "auto", "2", "3", "4", "5", "6", "7", "8"]
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
FP8_MODES = {"upcast (safe, any GPU)": "upcast", "fp8 matmul (fast, RTX 40xx/H100+)": "scaled_mm"}
LORA_MODES = {"merge into weights (fast)": "merge", "apply on the fly (low memory)": "on_the_fly"}


class InfiniteTalkModel(ManagedOutput):
    """What INFINITETALK_MODEL carries: the DiT, its load report, where it runs and its memory-manager patcher."""

    def __init__(self, model, report, device, patcher=None):
        self.model = model
        self.report = report
        self.device = device
        self.patcher = patcher

    def __repr__(self):
        return f"InfiniteTalkModel({self.report.family}, {self.report.compute_dtype})"


class InfiniteTalkModelLoader:
    @classmethod
    def INPUT_TYPES(cls):
        files = host.model_files(FOLDER)
        return {
            "required": {
                "model": (files, {"tooltip": "Wan 2.1 I2V 14B 480P or 720P base model (models/diffusion_models): "
                                             "fp16/bf16/fp32, fp8 (plain or scaled) .safetensors, or a city96 .gguf."}),
                "infinitetalk_model": (files, {"tooltip": "InfiniteTalk audio weights, single or multi speaker "
                                                          "(e.g. Wan2_1-InfiniTetalk-Single_fp16.safetensors, fp8 "
                                                          "scaled or GGUF), in models/diffusion_models or model_patches."}),
                "base_precision": (list(PRECISIONS), {"default": "bf16", "tooltip": "Compute precision. bf16 is "
                                                      "the official one; fp16 for GPUs without bf16; fp32 for debugging."}),
                "fp8_mode": (list(FP8_MODES), {"tooltip": "fp8 weights only: up-cast per layer (exact, any GPU) or "
                                               "fp8 matmul with per-token activation scales (compute capability "
                                               "8.9+: RTX 40xx/50xx, H100). See the README's speed table."}),
                "attention": (list(BACKENDS), {"default": "auto", "tooltip": "Attention kernel. auto: "
                               "FlashAttention-3 on Hopper (H100/H200) when installed (pip install fa3-fwd), else "
                               "sdpa (works everywhere). fa3_fp8: FA3 in fp8 with exact smoothing (Hopper, fastest, "
                               "within 1e-2 of bf16). int8: comfy-kitchen INT8 attention for RTX 30xx/40xx. sage: "
                               "SageAttention. A missing kernel falls back to sdpa with a warning."}),
                "blocks_to_swap": ("INT", {"default": 0, "min": 0, "max": 40, "tooltip": "Transformer blocks kept "
                                           "in CPU RAM and streamed to the GPU while the previous block computes "
                                           "(0 = all on GPU; 20 saves ~half the VRAM of the weights, 40 the most)."}),
            },
            "optional": {
                "lora": ("INFINITETALK_LORA", {"tooltip": "LoRAs from InfiniteTalk LoRA nodes (e.g. lightx2v, FusionX)."}),
                "lora_mode": (list(LORA_MODES), {"tooltip": "Float weights: bake LoRAs in at load (default) or keep "
                                                 "them separate. GGUF and fp8 weights always apply them on the fly."}),
                "torch_compile": ("BOOLEAN", {"default": False, "tooltip": "torch.compile the transformer blocks "
                                  "(needs Triton); works with blocks_to_swap. Fuses the element-wise work around the "
                                  "matmuls; the first step at a new size compiles for ~25 s."}),
                "gpus": (GPUS, {"default": "1", "tooltip": "GPUs that run the DiT together (sequence + guidance "
                         "parallelism, one worker process per GPU, each loading its own copy; the weights' host "
                         "pages are shared). auto = every visible GPU. The count must divide the 40 heads "
                         "(2, 4, 5, 8); otherwise one GPU is used and the report says why. Step caching is "
                         "off on several GPUs."}),
            },
        }

    RETURN_TYPES = ("INFINITETALK_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    CATEGORY = "InfiniteTalk/loaders"
    DESCRIPTION = "Loads Wan 2.1 I2V 14B + InfiniteTalk in any common format and shows what it recognised."

    def load(self, model, infinitetalk_model, base_precision, fp8_mode, attention, blocks_to_swap, lora=None,
             lora_mode="merge into weights (fast)", torch_compile=False, gpus="1"):
        device, offload = host.torch_device(), host.offload_device()
        base_path, audio_path = host.model_path(FOLDER, model), host.model_path(FOLDER, infinitetalk_model)
        options = dict(compute_dtype=PRECISIONS[base_precision], fp8_mode=FP8_MODES[fp8_mode],
                       loras=[(entry["path"], entry["strength"]) for entry in (lora or [])],
                       blocks_to_swap=blocks_to_swap, attention=attention, lora_mode=LORA_MODES[lora_mode])
        visible = torch.cuda.device_count() if device.type == "cuda" else 0
        world, note = choose_world(gpus, visible, dit_config(base_path, audio_path).num_heads) if gpus != "1" \
            else (1, "")
        if world > 1:
            return self._load_parallel(base_path, audio_path, world, options, torch_compile, note)
        # Everything to RAM first; the memory manager moves the resident part to the GPU when it is needed.
        dit, report = load_dit(base_path, audio_path, **dict(options, blocks_to_swap=0), device=offload,
                               offload_device=offload)
        block_swap.install(dit, blocks_to_swap, device)
        report = dataclasses.replace(report, blocks_to_swap=blocks_to_swap)
        patcher = PackPatcher(dit, load_device=device, offload_device=offload)
        load_before_forward(dit, patcher, lambda module, args: forward_memory(module, args[0]))
        text = report.text() + (f"\n{note}" if note else "")
        if torch_compile:
            text += "\ntorch.compile: " + ("on (the first step at each size compiles)" if dit.compile_blocks(device)
                                          else "off (no Triton)")
        host.show_text(None, text)
        return {"ui": {"text": [text]}, "result": (InfiniteTalkModel(dit, report, device, patcher),)}

    @staticmethod
    def _load_parallel(base_path, audio_path, world, options, torch_compile, note):
        """The DiT on ``world`` GPUs, one worker process each; outside ComfyUI's memory manager (the workers
        own their GPUs' memory for as long as the model is cached)."""
        devices = [f"cuda:{i}" for i in range(world)]
        pool = load_parallel_dit(base_path, audio_path, devices, compile=torch_compile,
                                 offload_device="cpu", **options)
        text = "\n".join(filter(None, [pool.load_report.text(), note,
                                        f"{world} GPUs ({', '.join(devices)}): sequence + guidance parallelism"]))
        host.show_text(None, text)
        return {"ui": {"text": [text]}, "result": (InfiniteTalkModel(pool, pool.load_report, pool.device),)}


def forward_memory(dit, x: torch.Tensor) -> int:
    """Bytes a forward on latents x [B,16,T,h,w] needs beyond the weights: core's estimate for Wan
    (``BaseModel.memory_required``: latent elements x dtype size x 0.01 MiB x ``memory_usage_factor``, dim/2222 for
    Wan 2.1) plus the two blocks block swap streams in."""
    dtype = getattr(dit, "compute_dtype", torch.float32)
    factor = getattr(getattr(dit, "config", None), "dim", 5120) / 2222
    area = x.shape[0] * math.prod(x.shape[2:])
    return int(area * dtype.itemsize * 0.01 * factor * 2 ** 20) + streamed_bytes(dit)


class InfiniteTalkLoRA:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "lora": (host.model_files("loras"), {"tooltip": "A Wan 2.1 I2V 14B LoRA (models/loras), e.g. "
                                                     "lightx2v step distill or FusionX."}),
                "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01,
                                       "tooltip": "LoRA strength; 0 disables it."}),
            },
            "optional": {
                "prev_lora": ("INFINITETALK_LORA", {"tooltip": "Chain: LoRAs selected by another InfiniteTalk LoRA node."}),
            },
        }

    RETURN_TYPES = ("INFINITETALK_LORA",)
    RETURN_NAMES = ("lora",)
    FUNCTION = "select"
    CATEGORY = "InfiniteTalk/loaders"
    DESCRIPTION = "Adds a LoRA with its strength to a chain for the InfiniteTalk Model Loader."

    def select(self, lora, strength, prev_lora=None):
        entry = {"name": lora, "path": host.model_path("loras", lora), "strength": float(strength)}
        return (list(prev_lora or []) + [entry],)


NODE_CLASS_MAPPINGS = {"InfiniteTalkModelLoader": InfiniteTalkModelLoader, "InfiniteTalkLoRA": InfiniteTalkLoRA}
NODE_DISPLAY_NAME_MAPPINGS = {"InfiniteTalkModelLoader": "InfiniteTalk Model Loader", "InfiniteTalkLoRA": "InfiniteTalk LoRA"}
