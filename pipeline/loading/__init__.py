"""Checkpoint loading: every DiT file format users download (fp16/bf16/fp32 safetensors, plain
and scaled fp8, GGUF), the InfiniteTalk adapter, LoRA and block swap.

Entry point: :func:`load_dit`. Modules: ``reader`` (files -> lazy tensor views), ``detect``
(what a file is), ``dequant`` (GGUF kernels), ``fp8``, ``quant_linear``, ``lora``,
``populate`` (meta model <- views), ``block_swap``.
"""
from .errors import CheckpointError
from .load import LoadReport, load_dit

__all__ = ["CheckpointError", "LoadReport", "load_dit"]
