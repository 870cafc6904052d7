"""Our own models (the InfiniteTalk DiT, wav2vec2, SAM2) as models ComfyUI's memory manager accounts for.

Each loader wraps its module in a :class:`PackPatcher`, a ``comfy.model_patcher.ModelPatcher`` subclass (as
ComfyUI-GGUF does), and the nodes call :func:`ensure_loaded` before computing. ComfyUI then

- loads it through ``load_models_gpu``, offloading other models first to make room for it and its activations;
- unloads it on "Unload models" / ``POST /free {"unload_models": true}`` (``unload_all_models``) and whenever
  another model needs the memory (``free_memory``): the weights go back to ``offload_device`` (CPU RAM);
- finds it unloaded on the next run, and :func:`ensure_loaded` loads the same object again (from RAM, no disk).

All or nothing: our layers compute with their weights on the compute device (no per-layer casting as in
``comfy.ops``), so a partial load is a full load and a partial unload a full unload. The transformer blocks that
``blocks_to_swap`` streams stay in host RAM, owned by the block swap: the manager never moves them and they are not
part of the model size it sees. The patcher is classic (not dynamic VRAM): it moves real tensors.

Outside ComfyUI the same class runs on a stand-in base and ``ensure_loaded`` moves the module itself.

What this relies on (ComfyUI 0.3.64 and 0.8.0 run in tests; 0.38.1 read from its source):
- ``LoadedModel`` calls ``partially_load`` to load, ``partially_unload`` when freeing less than is loaded, else
  ``detach(True)``; re-registering a loaded model detaches it with ``unpatch_all=False`` first
  (0.38.1 comfy/model_management.py:812-841, 988; the same in 0.3.64 and 0.8.0).
- ``free_memory(..., for_dynamic, pins_required, ram_required)`` spares dynamic models only for other dynamic ones:
  ours is not dynamic (``ModelPatcher.is_dynamic``, 0.38.1 comfy/model_patcher.py:404), so loading it evicts
  what it needs and frees pinned RAM for it (model_management.py:893-928, 964, 997); we call ``load_models_gpu``
  only, never ``free_memory`` (its signature changed).
- ``unload_all_models`` frees every device (0.38.1 model_management.py:2121-2123; 0.3.64/0.8.0: the torch device),
  which "Unload models" runs (0.38.1 main.py:423-424).
"""
from __future__ import annotations

import weakref
from itertools import chain

import torch
from torch import nn

try:  # ComfyUI is present when this pack is loaded from custom_nodes/.
    import comfy.model_management as _mm
    from comfy.model_patcher import ModelPatcher as _PatcherBase
except ImportError:  # tests, CLI
    _mm = None

    class _PatcherBase:
        """The part of ComfyUI's ModelPatcher that PackPatcher relies on, for use without ComfyUI."""

        def __init__(self, model, load_device, offload_device, size=0, **_):
            self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size
            self.parent = None

        def detach(self, unpatch_all=True):
            return self.model

# Set on the module (not the patcher) so that clones of a patcher agree on where the weights are.
_RESIDENT = "_infinitetalk_resident_on"


def _swapped_modules(module: nn.Module) -> set[int]:
    """ids of the modules inside blocks that block swap streams (``pipeline/loading/block_swap.py``)."""
    swap = getattr(module, "_block_swap", None)
    if swap is None:
        return set()
    return {id(m) for i in swap.swapped for m in swap.blocks[i].modules()}


def resident_modules(module: nn.Module) -> list[nn.Module]:
    """The modules whose own tensors live on the compute device while the model is loaded: all but the swapped blocks."""
    swapped = _swapped_modules(module)
    return [m for m in module.modules() if id(m) not in swapped]


def resident_bytes(module: nn.Module) -> int:
    """Bytes of the weights that loading moves to the compute device (parameters and buffers: GGUF blocks and fp8
    weights are buffers; streamed blocks excluded; a tensor shared by several modules once)."""
    tensors = {id(t): t for m in resident_modules(module)
               for t in chain(m._parameters.values(), m._buffers.values()) if t is not None}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def streamed_bytes(module: nn.Module) -> int:
    """Compute-device memory block swap needs while the model runs: two streamed blocks at a time."""
    swap = getattr(module, "_block_swap", None)
    if swap is None or not swap.swapped:
        return 0
    block = max(sum(h.numel() * h.element_size() for *_, h in swap.host[i]) for i in swap.swapped)
    return 2 * block


def move_resident(module: nn.Module, device: torch.device) -> None:
    """Move the resident weights to ``device`` in place (the swapped blocks stay where block swap keeps them) and drop
    caches that hold device tensors."""
    moved = {}  # id(old tensor) -> its copy: a tensor shared by several modules stays shared

    def copy(t):
        if id(t) not in moved:
            moved[id(t)] = t.data.to(device)
        return moved[id(t)]

    for m in resident_modules(module):
        for name, p in m._parameters.items():
            if p is not None and p.device != device:
                new = copy(p)
                if torch._has_compatible_shallow_copy_type(p, new):  # as nn.Module.to: keep the Parameter object
                    p.data = new
                else:
                    m._parameters[name] = nn.Parameter(new, requires_grad=p.requires_grad)
        for name, b in m._buffers.items():
            if b is not None and b.device != device:
                m._buffers[name] = copy(b)
    swap = getattr(module, "_block_swap", None)
    if swap is not None:
        swap.ready.clear()  # a block prefetched for the next forward
    rope = getattr(module, "_rope_cache", None)
    if isinstance(rope, dict):
        rope.clear()


def ram_bytes(module: nn.Module) -> int:
    """Bytes of CPU RAM the model's tensors hold (offloaded weights, block swap's host copies; each storage once)."""
    storages = {}
    for t in chain(module.parameters(), module.buffers()):
        if t.device.type == "cpu":
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
    return sum(storages.values())


class PackPatcher(_PatcherBase):
    """ModelPatcher for a plain ``nn.Module`` that computes with all its (resident) weights on ``load_device``.

    The manager's entry points are overridden so that nothing of ModelPatcher's per-layer lowvram machinery (which
    needs ``comfy.ops`` layers) and no ``self.model.to()`` (which would pull the swapped blocks onto the GPU) runs:
    ``partially_load`` loads everything, ``partially_unload`` and ``detach`` unload everything."""

    def __init__(self, model, load_device, offload_device, size=0, **kwargs):
        super().__init__(model, load_device=load_device, offload_device=offload_device,
                         size=size or resident_bytes(model), **kwargs)
        if not hasattr(model, _RESIDENT):
            setattr(model, _RESIDENT, None)

    # -- what the manager reads ------------------------------------------------------------------------------
    def model_size(self):
        return self.size

    def loaded_size(self):
        return self.size if self.is_loaded() else 0

    def current_loaded_device(self):
        return getattr(self.model, _RESIDENT) or self.offload_device

    def is_loaded(self) -> bool:
        return getattr(self.model, _RESIDENT) == torch.device(self.load_device)

    # -- what the manager calls ------------------------------------------------------------------------------
    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        """Load all resident weights (whatever budget ``extra_memory`` allows); returns the bytes moved."""
        if getattr(self.model, _RESIDENT) == torch.device(device_to):
            return 0
        move_resident(self.model, torch.device(device_to))
        setattr(self.model, _RESIDENT, torch.device(device_to))
        self.model.model_loaded_weight_memory = self.size  # what core code may read directly
        return self.size

    def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
        """Unload everything (a part of the model cannot compute on the CPU); returns the bytes freed."""
        return self._unload(device_to)

    def detach(self, unpatch_all=True):
        """``unpatch_all=False`` (re-registration in ``load_models_gpu``, ``__del__``) keeps the weights where they are."""
        if unpatch_all:
            self._unload(self.offload_device)
        return super().detach(unpatch_all=False)

    # ModelPatcher's own loading paths, for any caller that uses them directly.
    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False, **_):
        self.partially_load(device_to or self.load_device)

    def patch_model(self, device_to=None, lowvram_model_memory=0, load_weights=True, force_patch_weights=False):
        if load_weights and device_to is not None:
            self.partially_load(device_to)
        return self.model

    def unpatch_model(self, device_to=None, unpatch_weights=True):
        if unpatch_weights:
            self._unload(device_to or self.offload_device)

    def _unload(self, device_to) -> int:
        if getattr(self.model, _RESIDENT) is None:
            return 0
        move_resident(self.model, torch.device(device_to))
        setattr(self.model, _RESIDENT, None)
        self.model.model_loaded_weight_memory = 0
        return self.size


def ensure_loaded(patcher: PackPatcher, memory_required: int = 0) -> None:
    """Make sure ``patcher``'s model is on its compute device with ``memory_required`` bytes free for activations.

    In ComfyUI this goes through ``load_models_gpu`` (other models are offloaded to make room) whenever the model
    is not loaded or another model was loaded after it (``current_loaded_models`` is newest first): a VAE or CLIP
    vision call between windows may have taken the memory our activations need. Otherwise it costs nothing, so it can
    run before every forward."""
    if _mm is None:
        patcher.partially_load(patcher.load_device)
        return
    loaded = _mm.current_loaded_models
    if patcher.is_loaded() and loaded and loaded[0].model is patcher:
        return
    _mm.load_models_gpu([patcher], memory_required=memory_required, force_full_load=True)


def load_before_forward(module: nn.Module, patcher: PackPatcher, memory_required) -> None:
    """Call :func:`ensure_loaded` before every forward of ``module``; ``memory_required(module, args) -> bytes``
    estimates the activations of a call. The hook holds the patcher weakly and gets the module as an argument: a
    reference cycle would keep the model alive after ComfyUI's cache drops it (freed only by a full gc)."""
    ref = weakref.ref(patcher)

    def hook(module, args):
        p = ref()
        if p is not None:
            ensure_loaded(p, memory_required(module, args))

    module.register_forward_pre_hook(hook)


class ManagedOutput:
    """Mixin for a node output that owns a :class:`PackPatcher` (attribute ``patcher``), so that ComfyUI's output
    caches treat it as they treat core models.

    0.8's ``--cache-ram`` weighs an output by ``get_ram_usage()`` (core patchers: their size): ours is the model's
    real CPU RAM. 0.38's RAM-pressure cache takes any output with a ``patcher`` for a model and drops it first once
    the running workflow no longer uses it; it does not weigh the models the running workflow uses by their size, and
    nor do we (no ``_comfy_cache_tensors``): while the sampler holds the model, dropping its cache entry would free
    nothing, yet count as freed."""

    patcher = None

    def get_ram_usage(self) -> int:
        return 0 if self.patcher is None else ram_bytes(self.patcher.model)
