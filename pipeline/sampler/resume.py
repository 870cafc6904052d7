"""Checkpoints of a render in progress, so an interrupted render resumes at its first unfinished window.

A render's folder holds one H.264 segment per finished window (``video/writer.py``) and ``checkpoint.pt``:
the render key, the next window and the state it needs (its motion frames; windows are otherwise
independent: each derives its noise from (seed, window index)). The folder is named by
the render key, a hash of every input and setting (``render_key``), so a changed input or setting never
finds stale windows. Window k's segment is complete on disk before the checkpoint names k + 1, and both
are replaced atomically, so a crash at any moment leaves a consistent checkpoint.

A folder being rendered is marked in use (``Checkpoints.active``: this process; ``owner.json``: the machine and
process writing it), so the clean-up of abandoned folders (``checkpoint_cleanup``) never removes it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import socket

import torch

# Bump when the meaning of a checkpoint changes (an old folder is then never reused).
FORMAT = 1
# A folder whose owner file names another machine counts as in use while touched within this time.
FOREIGN_IN_USE_S = 86400
_OWNER = "owner.json"
_active: set[str] = set()  # folders rendered by this process now
# Parameters sampled per weight tensor when fingerprinting a model (weights are not hashed whole: 14B).
_SAMPLES = 4096


def _tensor_bytes(t: torch.Tensor, sample: bool):
    t = t.detach()
    flat = t.reshape(-1)
    if sample and flat.numel() > _SAMPLES:
        flat = flat[:: flat.numel() // _SAMPLES]
    flat = flat.contiguous().cpu()
    try:
        return flat.view(torch.uint8).numpy()  # hashed in place: a 1 GB embedding is not copied
    except (RuntimeError, TypeError):  # a tensor subclass (e.g. GGUF) that cannot be viewed as bytes
        return repr(flat.float().tolist()[:_SAMPLES]).encode()


def fingerprint(h, value, sample: bool = False) -> None:
    """Feed ``value`` into hash ``h``: tensors by their bytes (dtype, shape), modules by their named weights
    (a strided sample of each), objects with a ``fingerprint()`` by what it returns (a video file: path, size,
    mtime), dataclasses/dicts/sequences/plain objects by their fields, anything else by ``repr``."""
    if hasattr(value, "fingerprint") and callable(value.fingerprint) and not isinstance(value, type):
        h.update(type(value).__name__.encode())
        fingerprint(h, value.fingerprint(), sample)
    elif isinstance(value, torch.Tensor):
        h.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        h.update(_tensor_bytes(value, sample))
    elif isinstance(value, torch.nn.Module):
        for name, t in list(value.named_parameters()) + list(value.named_buffers()):
            h.update(name.encode())
            fingerprint(h, t, sample=True)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        fingerprint(h, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, sample)
    elif isinstance(value, dict):
        for k in sorted(value, key=str):
            h.update(repr(k).encode())
            fingerprint(h, value[k], sample)
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for v in value:
            fingerprint(h, v, sample)
    elif isinstance(value, (str, bytes, int, float, bool, type(None))):
        h.update(repr(value).encode())
    elif hasattr(value, "__dict__") and not callable(value):
        h.update(type(value).__name__.encode())
        fingerprint(h, {k: v for k, v in vars(value).items() if not k.startswith("__")}, sample)
    else:
        h.update(repr(value).encode())


def render_key(**parts) -> str:
    """Hex key of a render from its named inputs and settings (see ``fingerprint``)."""
    h = hashlib.blake2b(digest_size=20)
    fingerprint(h, {"format": FORMAT, **parts})
    return h.hexdigest()


class Checkpoints:
    """The checkpoint folder of one render (``root/<key>``)."""

    def __init__(self, root: str, key: str):
        self.key = key
        self.folder = os.path.join(root, key)

    def segment(self, index: int) -> str:
        """Path of window ``index``'s video segment."""
        return os.path.join(self.folder, f"window_{index:05d}.mp4")

    def load(self) -> tuple[int, dict | None]:
        """(first unfinished window, the state it needs); (0, None) without a usable checkpoint."""
        try:
            saved = torch.load(os.path.join(self.folder, "checkpoint.pt"), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError):
            return 0, None
        if saved.get("key") != self.key or saved.get("format") != FORMAT:
            return 0, None
        index = int(saved["next_window"])
        if not all(os.path.isfile(self.segment(k)) for k in saved["segments"]):
            return 0, None
        return index, saved["state"]

    def start(self) -> None:
        """Begin from scratch: an empty folder."""
        self.remove()
        os.makedirs(self.folder, exist_ok=True)
        self._claim()

    @contextlib.contextmanager
    def active(self):
        """Mark the folder in use by this process while the block runs (a render)."""
        path = os.path.abspath(self.folder)
        _active.add(path)
        try:
            yield self
        finally:
            _active.discard(path)

    def _claim(self) -> None:
        """Write the owner file (this machine and process) if it is missing or names another owner."""
        owner = {"host": socket.gethostname(), "pid": os.getpid()}
        path = os.path.join(self.folder, _OWNER)
        try:
            with open(path) as f:
                if json.load(f) == owner:
                    return
        except (OSError, ValueError):
            pass
        with open(path, "w") as f:
            json.dump(owner, f)

    def commit(self, next_window: int, segments: list[int], state: dict) -> None:
        """Record that windows ``segments`` (all those before ``next_window`` that add frames) are on disk,
        and the state window ``next_window`` needs; one atomic file replace."""
        os.makedirs(self.folder, exist_ok=True)
        self._claim()
        state = {k: v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
        tmp = os.path.join(self.folder, "checkpoint.pt.part")
        torch.save({"key": self.key, "format": FORMAT, "next_window": next_window, "segments": list(segments),
                    "state": state}, tmp)
        os.replace(tmp, os.path.join(self.folder, "checkpoint.pt"))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (unknown counts as alive)."""
    try:
        import psutil  # ships with ComfyUI
        return psutil.pid_exists(pid)
    except ImportError:
        pass
    if os.name != "posix":  # os.kill would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def in_use(folder: str, idle_s: float) -> bool:
    """Whether a render may be writing checkpoint folder ``folder`` (untouched for ``idle_s`` seconds): one of this
    process's, or one whose owner file names another live process here, or another machine's touched within
    ``FOREIGN_IN_USE_S``."""
    if os.path.abspath(folder) in _active:
        return True
    try:
        with open(os.path.join(folder, _OWNER)) as f:
            owner = json.load(f)
        host, pid = owner["host"], int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname():
        return idle_s < FOREIGN_IN_USE_S
    return pid != os.getpid() and _alive(pid)
