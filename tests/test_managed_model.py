"""Our models under a memory manager, outside ComfyUI: PackPatcher against a stand-in of comfy.model_management that
calls the patcher exactly as ComfyUI 0.3.64-0.38 do (LoadedModel.model_load -> partially_load; model_unload ->
partially_unload when freeing less than is loaded, else detach(True); re-registering a loaded model pops it and
calls detach(False)). The real thing runs in tests/integration/test_memory_comfyui.py."""
import gc
import weakref

import pytest
import torch
from torch import nn

import loading_files as lf
import loading_standin as standin
import wav2vec_files as wf
from infinitetalk_lipsync.nodes import audio as audio_node
from infinitetalk_lipsync.nodes import loader as loader_node
from infinitetalk_lipsync.nodes import managed_model as mm
from infinitetalk_lipsync.pipeline.loading import block_swap
from infinitetalk_lipsync.pipeline.loading import load as load_mod

CPU = torch.device("cpu")


class _Loaded:
    """comfy.model_management.LoadedModel, the part that talks to the patcher."""

    def __init__(self, patcher):
        self.model, self.device = patcher, patcher.load_device

    def model_unload(self, memory_to_free=None):
        if memory_to_free is not None and memory_to_free < self.model.loaded_size():
            if self.model.partially_unload(self.model.offload_device, memory_to_free) >= memory_to_free:
                return False
        self.model.detach(True)
        return True


class FakeManager:
    def __init__(self):
        self.current_loaded_models = []
        self.calls = []

    def load_models_gpu(self, models, memory_required=0, force_full_load=False, **_):
        self.calls.append((models, memory_required, force_full_load))
        for patcher in models:
            entry = next((e for e in self.current_loaded_models if e.model is patcher), None)
            if entry is not None:  # re-registration: pop, detach without unpatching, load again
                self.current_loaded_models.remove(entry)
                patcher.detach(False)
            else:
                entry = _Loaded(patcher)
            patcher.partially_load(entry.device, 1e32)
            self.current_loaded_models.insert(0, entry)

    def free_memory(self, memory_required, device):
        for entry in list(self.current_loaded_models):
            if entry.device == device and entry.model_unload(memory_required):
                self.current_loaded_models.remove(entry)

    def unload_all_models(self):
        self.free_memory(1e30, CPU)


@pytest.fixture
def manager(monkeypatch):
    fake = FakeManager()
    monkeypatch.setattr(mm, "_mm", fake)
    return fake


class _Blocks(nn.Module):
    def __init__(self, n=4, dim=8):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n))
        self.head = nn.Linear(dim, dim, bias=False)
        self.head.register_buffer("qweight", torch.zeros(dim, 3, dtype=torch.uint8))  # a GGUF-style buffer
        self._rope_cache = {}

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def _nbytes(module):
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def test_sizes_leave_out_the_swapped_blocks():
    model = _Blocks()
    block_swap.install(model, 2, CPU)
    patcher = mm.PackPatcher(model, CPU, CPU)
    block = _nbytes(model.blocks[0])
    assert patcher.model_size() == _nbytes(model) - 2 * block == mm.resident_bytes(model)
    assert mm.streamed_bytes(model) == 2 * block
    out = loader_node.InfiniteTalkModel(model, None, CPU, patcher)  # RAM seen by ComfyUI's caches: everything
    assert out.get_ram_usage() == _nbytes(model) and out.patcher is patcher


def test_loading_moves_only_the_resident_part_and_drops_device_caches():
    model = _Blocks()
    swap = block_swap.install(model, 2, CPU)
    model(torch.zeros(1, 8))
    model._rope_cache["grid"] = torch.zeros(1)
    swap.ready[2] = (None, [torch.zeros(1)])
    mm.move_resident(model, torch.device("meta"))
    assert {p.device.type for b in model.blocks[:2] for p in b.parameters()} == {"meta"}
    assert {p.device.type for b in model.blocks[2:] for p in b.parameters()} == {"cpu"}  # block swap keeps them
    assert model.head.qweight.is_meta and model.head.weight.is_meta
    assert model._rope_cache == {} and swap.ready == {}


def test_unload_and_transparent_reload_through_the_manager(manager):
    model = _Blocks()
    patcher = mm.PackPatcher(model, CPU, CPU)
    assert not patcher.is_loaded() and patcher.loaded_size() == 0
    mm.ensure_loaded(patcher, 123)
    assert patcher.is_loaded() and patcher.loaded_size() == patcher.model_size()
    assert manager.calls == [([patcher], 123, True)] and manager.current_loaded_models[0].model is patcher
    mm.ensure_loaded(patcher)  # loaded and newest: nothing to ask
    assert len(manager.calls) == 1

    other = mm.PackPatcher(nn.Linear(2, 2), CPU, CPU)
    mm.ensure_loaded(other)  # e.g. the VAE between two windows
    mm.ensure_loaded(patcher, 7)  # ours again: the manager re-checks the room for the activations
    assert manager.calls[-1] == ([patcher], 7, True) and manager.current_loaded_models[0].model is patcher
    assert patcher.is_loaded() and len(manager.current_loaded_models) == 2

    manager.unload_all_models()  # "Unload models" / POST /free {"unload_models": true}
    assert manager.current_loaded_models == [] and not patcher.is_loaded() and not other.is_loaded()
    mm.ensure_loaded(patcher)
    assert patcher.is_loaded() and manager.current_loaded_models[0].model is patcher


def test_partial_unload_frees_everything(manager):
    patcher = mm.PackPatcher(_Blocks(), CPU, CPU)
    mm.ensure_loaded(patcher)
    entry = manager.current_loaded_models[0]
    assert entry.model_unload(memory_to_free=1) is False  # freed more than asked: stays registered, unloaded
    assert not patcher.is_loaded() and patcher.loaded_size() == 0
    assert patcher.current_loaded_device() == patcher.offload_device
    mm.ensure_loaded(patcher)
    assert patcher.is_loaded() and len(manager.current_loaded_models) == 1


def test_reregistration_keeps_the_weights(manager):
    patcher = mm.PackPatcher(_Blocks(), CPU, CPU)
    mm.ensure_loaded(patcher)
    patcher.detach(unpatch_all=False)
    assert patcher.is_loaded()
    patcher.detach()
    assert not patcher.is_loaded()


def test_standalone_without_comfyui_loads_in_place():
    patcher = mm.PackPatcher(_Blocks(), CPU, CPU)
    mm.ensure_loaded(patcher)
    assert patcher.is_loaded()


def test_loader_node_hands_the_dit_to_the_manager_before_each_forward(tmp_path, monkeypatch, manager):
    ref = lf.reference()
    base, it = lf.write_float_pair(ref, tmp_path)
    monkeypatch.setattr(load_mod, "build_model", standin.builder(ref))
    monkeypatch.setattr(loader_node.host, "torch_device", lambda: CPU)
    out = loader_node.InfiniteTalkModelLoader().load(str(base), str(it), "fp32", "upcast (safe, any GPU)", "sdpa", 1)
    (model,) = out["result"]
    assert model.patcher.model is model.model and model.device == CPU and model.report.blocks_to_swap == 1
    assert "block swap 1" in out["ui"]["text"][0]
    swapped = model.model.blocks[len(model.model.blocks) - 1]
    assert model.patcher.model_size() == mm.resident_bytes(model.model) == _nbytes(model.model) - _nbytes(swapped)
    (hook,) = model.model._forward_pre_hooks.values()
    x = torch.zeros(1, 16, 3, 4, 4)
    hook(model.model, (x,))
    assert manager.calls == [([model.patcher], loader_node.forward_memory(model.model, x), True)]
    assert model.patcher.is_loaded()


@pytest.mark.parametrize("blocks_to_swap", [0, 1])
def test_the_cached_output_alone_keeps_the_dit_alive(tmp_path, blocks_to_swap):
    """ComfyUI frees a model when its cache drops the output: no reference cycle (load hook, block swap hooks) may
    keep the weights until a full gc."""
    base, it = lf.write_float_pair(lf.reference(), tmp_path)
    gc.collect()
    gc.disable()
    try:
        out = loader_node.InfiniteTalkModelLoader().load(str(base), str(it), "fp32", "upcast (safe, any GPU)", "sdpa",
                                                         blocks_to_swap)
        dit = out["result"][0].model
        alive = [weakref.ref(dit), weakref.ref(dit.blocks[-1])]
        del out, dit
        assert [a() for a in alive] == [None, None]
    finally:
        gc.enable()


def test_quantised_weights_count_and_move_compressed(tmp_path, monkeypatch):
    """GGUF blocks and fp8 weights are buffers: counted at their stored size, moved like parameters."""
    ref = lf.reference()
    base, audio = lf.split(ref)
    lf.write_gguf(base, tmp_path / "base-Q8_0.gguf", lf.T.Q8_0)
    lf.write_st(lf.kijai_fp8(audio, torch.float8_e4m3fn), tmp_path / "it_fp8.safetensors")
    monkeypatch.setattr(load_mod, "build_model", standin.builder(ref))
    monkeypatch.setattr(loader_node.host, "torch_device", lambda: CPU)
    out = loader_node.InfiniteTalkModelLoader().load(str(tmp_path / "base-Q8_0.gguf"), str(tmp_path / "it_fp8.safetensors"),
                                                     "fp32", "upcast (safe, any GPU)", "sdpa", 1)
    dit = out["result"][0].model
    dtypes = {b.dtype for m in mm.resident_modules(dit) for b in m._buffers.values() if b is not None}
    assert torch.uint8 in dtypes and torch.float8_e4m3fn in dtypes  # GGUF blocks and fp8 weights
    swapped = dit.blocks[len(dit.blocks) - 1]
    assert out["result"][0].patcher.model_size() == _nbytes(dit) - _nbytes(swapped)
    mm.move_resident(dit, torch.device("meta"))
    assert all(t.is_meta for m in mm.resident_modules(dit) for t in list(m._parameters.values()) +
               list(m._buffers.values()) if t is not None)
    assert not any(t.is_meta for t in list(swapped.parameters()) + list(swapped.buffers()))


def test_forward_memory_follows_core_estimate_plus_streamed_blocks():
    model = _Blocks()
    x = torch.zeros(2, 16, 21, 60, 104)  # 480p, 81 frames, two guidance branches
    wan14 = 2 * 21 * 60 * 104 * 4 * 0.01 * (5120 / 2222) * 2 ** 20  # fp32; stand-ins have no config: dim 5120
    assert loader_node.forward_memory(model, x) == int(wan14)
    block_swap.install(model, 1, CPU)
    assert loader_node.forward_memory(model, x) == int(wan14) + 2 * _nbytes(model.blocks[3])


def test_wav2vec2_loader_and_embeds_use_the_manager(tmp_path, manager):
    path = wf.write_single_file(tmp_path / "w.safetensors")
    (handle,) = audio_node.InfiniteTalkAudioEncoderLoader().load(str(path), "cpu", "fp32", "auto")
    assert handle.patcher.model is handle.model and not handle.patcher.is_loaded()
    audio = {"waveform": wf.speech_like(0.5, 16000, 1), "sample_rate": 16000}
    audio_node.InfiniteTalkAudioEmbeds().embed(handle, audio, 25.0, 0.0, 0.0)
    assert manager.calls == [([handle.patcher], 0, True)] and handle.patcher.is_loaded()


def test_sam2_loader_and_face_mask_use_the_manager(tmp_path, monkeypatch, manager):
    pytest.importorskip("transformers.models.sam2_video")
    from safetensors.torch import save_file

    from infinitetalk_lipsync.nodes import mask as mask_node
    from infinitetalk_lipsync.pipeline.mask import sam2_keys
    from sam2_tiny import TINY_SIZE, TINY_TRUNK, tiny_hf_state_dict, to_meta_keys
    for key, value in TINY_TRUNK.items():
        monkeypatch.setitem(sam2_keys.KNOWN_TRUNKS, key, value)
    path = tmp_path / "sam2.1_hiera_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in to_meta_keys(tiny_hf_state_dict()).items()}, str(path))
    (sam,) = mask_node.InfiniteTalkSAM2Loader().load(str(path), "fp32")
    assert isinstance(sam, mask_node.Sam2Model) and sam.patcher.model is sam.model and not sam.patcher.is_loaded()
    assert sam.get_ram_usage() >= sam.patcher.model_size() > 0
    images = torch.rand(2, TINY_SIZE, TINY_SIZE, 3)
    mask_node.InfiniteTalkFaceMask().run(images, "face", 0, 1, 5, sam2=sam, box="32,32,96,96")
    assert manager.calls == [([sam.patcher], 0, True)] and sam.patcher.is_loaded()
