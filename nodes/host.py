"""The one adapter between our nodes and the host (ComfyUI).

Everything a node needs from ComfyUI — devices, memory, interrupts, progress, model
folders, text on the node — goes through here, except the memory manager's view of our own
models, which ``managed_model`` gives, and what a core VIDEO object asks for (trim, crop, pixel conversion),
which ``host_video`` reads. Outside ComfyUI (unit tests, scripts)
each function falls back to plain torch behaviour with the same interface, so the
nodes and the ``pipeline`` core run unchanged.
"""
from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger("infinitetalk_lipsync")

try:  # ComfyUI is present when this pack is loaded from custom_nodes/.
    import comfy.model_management as _mm
    import comfy.utils as _cutils
    import folder_paths as _fp
    from comfy.cli_args import args as _args
except ImportError:  # tests, CLI
    _mm = _cutils = _fp = _args = None

IN_COMFY = _mm is not None

# Pack-specific model folders: name -> (subfolder of models/, extensions, extra core folders searched).
PACK_FOLDERS = {
    "wav2vec2": ("wav2vec2", {".safetensors", ".bin", ".pt", ".pth", ".json"}, ("audio_encoders",)),
    "sam2": ("sam2", {".safetensors", ".pt", ".pth"}, ()),
    # Mel-Band RoFormer: our folder, plus diffusion_models, where Kijai's ComfyUI-MelBandRoFormer reads it.
    "vocal_separation": ("vocal_separation", {".safetensors", ".sft", ".pt", ".pth", ".bin", ".ckpt"},
                         ("diffusion_models",)),
    # DiT files incl. GGUF: the core diffusion_models/unet folders (+ model_patches, where Comfy-Org's
    # InfiniteTalk files live) listed with .gguf, without changing what core loaders list.
    "infinitetalk_dit": ("diffusion_models", {".safetensors", ".sft", ".gguf", ".pt", ".pth", ".bin"},
                         ("diffusion_models", "model_patches")),
}


def torch_device() -> torch.device:
    """The device models compute on."""
    if IN_COMFY:
        return _mm.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    """Where idle weights wait (CPU RAM)."""
    if IN_COMFY:
        return _mm.unet_offload_device()
    return torch.device("cpu")


def soft_empty_cache() -> None:
    """Give cached, unused accelerator memory back between windows."""
    if IN_COMFY:
        _mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


def free_memory(bytes_needed: int, device: torch.device) -> None:
    """Ask the host to unload other models until ``bytes_needed`` are free on ``device`` (for a model used once and
    dropped; a model that stays loaded goes through ``managed_model`` instead)."""
    if IN_COMFY:
        _mm.free_memory(bytes_needed, device)
    else:
        soft_empty_cache()


def throw_if_interrupted() -> None:
    """Raise the host's interrupt exception if the user pressed Cancel; no-op outside ComfyUI."""
    if IN_COMFY:
        _mm.throw_exception_if_processing_interrupted()


class Progress:
    """Progress bar over ``total`` units, shown on node ``node_id`` (None = the running node)."""

    def __init__(self, total: int, node_id: str | None = None):
        self.total = max(1, int(total))
        self.value = 0
        self._bar = _cutils.ProgressBar(self.total, node_id=node_id) if IN_COMFY else None

    def update(self, n: int = 1, preview=None) -> None:
        """Advance by ``n``; ``preview`` is an optional PIL image shown on the node.

        Every update checks Cancel itself: ComfyUI's progress hook (which also checks it) is throttled
        since 0.38 (ProgressBar sends at most every 100 ms and 0.5 %), so loops cannot rely on it."""
        throw_if_interrupted()
        self.value = min(self.total, self.value + n)
        if self._bar is not None:
            shown = None if preview is None else ("JPEG", preview, getattr(_args, "preview_size", 512))
            self._bar.update_absolute(self.value, self.total, shown)


def register_model_folders() -> None:
    """Register our own model folders with ComfyUI (idempotent); no-op outside ComfyUI."""
    if not IN_COMFY:
        return
    for name, (sub, exts, extra) in PACK_FOLDERS.items():
        paths = [os.path.join(_fp.models_dir, sub)]
        for core in extra:
            paths += [p for p in _fp.folder_names_and_paths.get(core, ([], set()))[0] if p not in paths]
        old_paths, old_exts = _fp.folder_names_and_paths.get(name, ([], set()))
        _fp.folder_names_and_paths[name] = (list(dict.fromkeys(old_paths + paths)), set(old_exts) | exts)


def model_files(folder: str) -> list[str]:
    """File names (relative paths) in ComfyUI model folder ``folder``; [] outside ComfyUI."""
    if not IN_COMFY:
        return []
    return _fp.get_filename_list(folder)


def model_path(folder: str, name: str) -> str:
    """Absolute path of ``name`` in model folder ``folder``.

    Outside ComfyUI, ``name`` is taken as a path. Raises FileNotFoundError naming the folder."""
    if IN_COMFY:
        path = _fp.get_full_path(folder, name)
        if path is None:
            where = ", ".join(_fp.get_folder_paths(folder)) or f"models/{folder}"
            raise FileNotFoundError(f"Model file '{name}' was not found in the '{folder}' folder ({where}). "
                                    f"Put it there and refresh the node (press R).")
        return path
    if not os.path.isfile(name):
        raise FileNotFoundError(f"Model file '{name}' does not exist.")
    return name


def executing_node_id() -> str | None:
    """Id of the node ComfyUI is running now (None outside ComfyUI or between nodes)."""
    if not IN_COMFY:
        return None
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:  # ComfyUI before the executing context existed
        return None
    context = get_executing_context()
    return None if context is None else context.node_id


def show_text(node_id: str | None, text: str) -> None:
    """Show ``text`` on node ``node_id`` (None: the running node) while it runs, via ComfyUI's
    progress-text channel; it is also logged. To keep text on the node after the run, a node
    returns ``{"ui": {"text": [text]}, "result": ...}`` as well (js/show_text.js displays it)."""
    log.info(text)
    node_id = node_id if node_id is not None else executing_node_id()
    if IN_COMFY and node_id is not None:
        try:
            from server import PromptServer
            PromptServer.instance.send_progress_text(text, node_id)
        except (ImportError, AttributeError):  # no server (ComfyUI used as a library)
            pass


def load_model(patcher) -> None:
    """Make sure a host-managed model (e.g. a CLIP vision patcher) is on its compute device."""
    if IN_COMFY:
        _mm.load_model_gpu(patcher)


# -- VIDEO in and out (core's comfy_api VIDEO type; a path-backed stand-in outside ComfyUI) ---------------------

class _FileVideo:
    """Outside ComfyUI: the part of core's VideoFromFile our nodes use."""

    def __init__(self, path: str):
        self.path = path

    def get_stream_source(self):
        return self.path

    def get_components(self):
        import types
        import av
        with av.open(self.path) as container:
            images = torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) / 255.0
                                  for f in container.decode(video=0)])
            rate = float(container.streams.video[0].average_rate)
        return types.SimpleNamespace(images=images, frame_rate=rate)


def video_from_file(path: str):
    """A core VIDEO (``VideoFromFile``) for the video file at ``path``."""
    try:
        from comfy_api.input_impl import VideoFromFile
    except ImportError:  # tests, CLI
        return _FileVideo(path)
    return VideoFromFile(path)


def video_source(video, name: str):
    """Unwrap a core VIDEO for reading window by window: ('file', the arguments of ``reader.VideoFile``: source,
    trim, crops, pixel rule) or ('frames', (IMAGE [N,H,W,3], fps)); see ``host_video``."""
    from .host_video import video_source as unwrap
    return unwrap(video, name)


def render_folders() -> tuple[str, str]:
    """(where finished videos go, where render checkpoints go). In ComfyUI: its temp folder (served to the
    browser, cleared when ComfyUI starts; SaveVideo copies what the user keeps) and
    output/infinitetalk_checkpoints (checkpoints must survive a crash and restart)."""
    if IN_COMFY:
        videos, checkpoints = _fp.get_temp_directory(), os.path.join(_fp.get_output_directory(), "infinitetalk_checkpoints")
    else:
        import tempfile
        base = os.environ.get("INFINITETALK_RENDER_DIR") or os.path.join(tempfile.gettempdir(), "infinitetalk")
        videos, checkpoints = base, os.path.join(base, "checkpoints")
    for folder in (videos, checkpoints):
        os.makedirs(folder, exist_ok=True)
    return videos, checkpoints


def available_ram() -> int | None:
    """Bytes of host RAM available for new allocations (Linux/macOS), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_device_memory(device) -> int | None:
    """Free bytes on a CUDA ``device`` (what the allocator could still get), None for other devices."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
