"""Open a checkpoint file as a uniform, lazily read ``{key: tensor}`` view.

* safetensors: our own header parser over a copy-on-write ``mmap``; each tensor is a
  zero-copy view into the mapping (nothing is read until used, nothing is copied twice);
* GGUF: ``gguf.GGUFReader`` (memory-mapped); float tensors become torch views, quantised
  ones stay raw bytes in a :class:`GGUFWeight`;
* ``.pt/.pth/.bin/.ckpt``: ``torch.load(weights_only=True)`` only — code is never executed.

Key prefixes added by ComfyUI tooling (``model.diffusion_model.``, ``diffusion_model.``,
``model.``) are stripped so every caller sees the official names.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import pickle
import struct
from dataclasses import dataclass

import torch

from . import dequant
from .errors import CheckpointError

PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in _ST_DTYPES.items()}


@dataclass
class GGUFWeight:
    """A GGUF-quantised tensor kept as its raw blocks.

    raw: uint8 ``[rows, bytes_per_row]`` (memory-mapped until moved); qtype: ggml type id;
    shape: torch-order logical shape."""
    raw: torch.Tensor
    qtype: int
    shape: tuple

    @property
    def type_name(self) -> str:
        return dequant.type_name(self.qtype)

    def dequantize(self, dtype=torch.float32, device=None) -> torch.Tensor:
        raw = self.raw if device is None else self.raw.to(device)
        return dequant.dequantize(raw, self.qtype, self.shape, dtype)


def _strip_prefix(keys: list[str], path) -> tuple[str, dict[str, str]]:
    """Choose the prefix most keys carry (if any); return (prefix, {stripped: original})."""
    for prefix in PREFIXES:
        carried = [k for k in keys if k.startswith(prefix)]
        if carried and len(carried) * 2 > len(keys):
            mapping = {}
            for k in keys:
                short = k[len(prefix):] if k.startswith(prefix) else k
                if short in mapping:
                    raise CheckpointError(path, "the same tensor appears with and without a key prefix",
                                          found=f"'{k}' and '{mapping[short]}'", keys=[short],
                                          fix="re-save the file with one naming scheme")
                mapping[short] = k
            return prefix, mapping
    return "", {k: k for k in keys}


class Checkpoint:
    """Read-only view of one checkpoint file.

    ``keys()`` are the stripped names; ``get(key)`` returns a torch tensor (any dtype,
    CPU, possibly a view into the file) or a :class:`GGUFWeight`; ``type_name(key)`` is
    the storage type as written in the file (``F32``, ``F8_E4M3``, ``Q4_K`` ...)."""

    def __init__(self, path, fmt: str, entries: dict, metadata: dict, loader):
        self.path = str(path)
        self.format = fmt
        self.metadata = metadata
        self.prefix, self._names = _strip_prefix(list(entries), path)
        self._entries = entries  # original key -> (type_name, shape, handle)
        self._loader = loader

    def keys(self) -> list[str]:
        return list(self._names)

    def __contains__(self, key: str) -> bool:
        return key in self._names

    def __len__(self) -> int:
        return len(self._names)

    def original_key(self, key: str) -> str:
        """The key as spelled in the file (with its prefix)."""
        return self._names[key]

    def shape(self, key: str) -> tuple:
        return tuple(self._entries[self._names[key]][1])

    def type_name(self, key: str) -> str:
        return self._entries[self._names[key]][0]

    def get(self, key: str):
        if key not in self._names:
            raise CheckpointError(self.path, f"tensor '{key}' is not in this file", keys=[key])
        return self._loader(self._entries[self._names[key]])

    def type_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t, _, _ in self._entries.values():
            counts[t] = counts.get(t, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


# ---------------------------------------------------------------- safetensors

def _open_safetensors(path) -> Checkpoint:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(path, "file is too short to be a safetensors file", found=f"{size} bytes",
                                  fix="the download is incomplete or the file is empty; download it again")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100_000_000):
            raise CheckpointError(path, "not a valid safetensors file (header length out of range)",
                                  found=f"header length {n} in a {size}-byte file",
                                  fix="the file is truncated or not a safetensors file; download it again")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(path, f"corrupt safetensors header ({exc})",
                                  fix="download the file again") from None
        if not isinstance(header, dict):
            raise CheckpointError(path, "corrupt safetensors header (not a JSON object)", fix="download the file again")
        metadata = header.pop("__metadata__", None) or {}
        data_size = size - 8 - n
        entries = {}
        short = []
        for key, info in header.items():
            try:
                dtype = _ST_DTYPES[info["dtype"]]
                shape = tuple(int(s) for s in info["shape"])
                begin, end = (int(o) for o in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise CheckpointError(path, "corrupt safetensors header entry", found=repr(info)[:200], keys=[key],
                                      fix="download the file again") from None
            if end > data_size:
                short.append(key)
            entries[key] = (info["dtype"], shape, (dtype, shape, 8 + n + begin, end - begin))
        if short:
            raise CheckpointError(path, "file is truncated: tensors extend past the end of the file",
                                  found=f"{size} bytes on disk", keys=short,
                                  fix="the download was interrupted; download the file again")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size else None

    def load(entry):
        dtype, shape, offset, nbytes = entry[2]
        if math.prod(shape) == 0:
            return torch.empty(shape, dtype=dtype)
        t = torch.frombuffer(mm, dtype=torch.uint8, count=nbytes, offset=offset)
        if offset % dtype.itemsize:
            t = t.clone()  # unaligned: a private aligned copy of this one tensor
        return t.view(dtype).reshape(shape)

    return Checkpoint(path, "safetensors", entries, metadata, load)


# ---------------------------------------------------------------- GGUF

def _field_value(field):
    """A GGUF key/value field as a Python value (str, number, or list of them).

    ``ReaderField.contents()`` exists only from gguf 0.16; ``parts``/``data``/``types`` exist in every
    gguf release we support: ``data`` indexes the ``parts`` holding the value(s)."""
    import gguf

    if not field.types:
        return None
    string = gguf.GGUFValueType.STRING

    def one(part, kind):
        return bytes(part).decode("utf-8", errors="replace") if kind == string else part.tolist()[0]

    if field.types[0] == gguf.GGUFValueType.ARRAY:
        kind = field.types[-1]
        if kind == gguf.GGUFValueType.ARRAY:  # nested arrays: not used by model files
            return None
        return [one(field.parts[i], kind) for i in field.data]
    return one(field.parts[field.data[0]], field.types[0])


GGUF_MIN = (0, 13)  # older readers call numpy APIs that numpy 2 removed (requirements.txt: gguf>=0.13)


def _check_gguf_version(path) -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("gguf")
    except PackageNotFoundError:
        return  # a vendored copy: let the reader try
    parts = tuple(int(p) for p in found.split(".")[:2] if p.isdigit())
    if parts < GGUF_MIN:
        raise CheckpointError(path, f"the installed gguf package {found} is too old to read GGUF files here",
                              expected=f"gguf >= {'.'.join(map(str, GGUF_MIN))}",
                              fix="upgrade it in ComfyUI's python: python -m pip install -U gguf")


def _open_gguf(path) -> Checkpoint:
    import gguf
    import numpy as np

    _check_gguf_version(path)
    try:
        reader = gguf.GGUFReader(path, "c")
    except Exception as exc:  # the reader raises bare ValueError/IndexError/struct errors on bad bytes
        raise CheckpointError(path, f"not a readable GGUF file ({type(exc).__name__}: {exc})",
                              fix="the file is truncated or corrupt; download it again") from None

    def field(name):
        f = reader.get_field(name)
        return None if f is None else _field_value(f)

    metadata = {k: _field_value(v) for k, v in reader.fields.items()
                if not k.startswith("GGUF.") and not k.startswith("tokenizer.")}
    entries = {}
    for t in reader.tensors:
        qtype = int(t.tensor_type)
        shape = tuple(int(s) for s in reversed(t.shape.tolist()))
        orig = field(f"comfy.gguf.orig_shape.{t.name}")
        if orig is not None:
            shape = tuple(int(s) for s in orig)
        entries[t.name] = (dequant.type_name(qtype), shape, (t, qtype, shape))

    def load(entry):
        t, qtype, shape = entry[2]
        data = np.asarray(t.data)
        if qtype in (dequant.F32, dequant.F16):
            return torch.from_numpy(data).reshape(shape)
        raw = torch.from_numpy(data.reshape(-1).view(np.uint8))
        if qtype == dequant.BF16:
            return raw.view(torch.bfloat16).reshape(shape)
        if qtype not in dequant.SUPPORTED:
            raise CheckpointError(path, f"tensor '{t.name}' uses GGUF type {dequant.type_name(qtype)}, "
                                  "which this loader does not support", keys=[t.name],
                                  expected="F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K",
                                  fix="use a file quantised to one of the supported types")
        return GGUFWeight(raw.reshape(shape[0] if len(shape) > 1 else 1, -1), qtype, shape)

    return Checkpoint(path, "gguf", entries, metadata, load)


# ---------------------------------------------------------------- pickle

def _unwrap(obj):
    """Find the flat tensor dict inside the usual wrappers ({'state_dict': ...}, {'model': ...})."""
    for _ in range(3):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        if isinstance(obj, dict):
            inner = [obj[k] for k in ("state_dict", "model", "module", "params_ema") if isinstance(obj.get(k), dict)]
            if inner:
                obj = inner[0]
                continue
        break
    return None


def _open_pickle(path) -> Checkpoint:
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        raise CheckpointError(path, "this pickle file needs code execution to load, which is refused for safety",
                              found=str(exc).splitlines()[0][:200],
                              fix="use a .safetensors or .gguf version of this model") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(path, f"cannot read this PyTorch file ({exc})".splitlines()[0],
                              fix="the file is truncated or corrupt; download it again") from None
    sd = _unwrap(obj)
    if sd is None:
        raise CheckpointError(path, "the file does not contain a flat dictionary of tensors",
                              found=type(obj).__name__, fix="use a .safetensors or .gguf checkpoint")
    entries = {k: (DTYPE_NAMES.get(v.dtype, str(v.dtype)), tuple(v.shape), v) for k, v in sd.items()}
    return Checkpoint(path, "pickle", entries, {}, lambda e: e[2])


def open_checkpoint(path) -> Checkpoint:
    """Open ``path`` by its content (magic bytes), not its extension.

    Raises FileNotFoundError if missing, CheckpointError if unreadable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic[:4] == b"GGUF":
        return _open_gguf(path)
    if magic[:2] == b"PK" or magic[:1] == b"\x80":
        return _open_pickle(path)
    if path.lower().endswith(".gguf"):
        return _open_gguf(path)  # reports the bad magic clearly
    return _open_safetensors(path)


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint file of any format ``open_checkpoint`` reads, as a plain dict
    (safetensors views stay zero-copy; GGUF-quantised tensors are dequantised to float32).

    The one reader for files that are loaded whole (wav2vec2, SAM2). Raises FileNotFoundError if
    missing, CheckpointError if unreadable."""
    ck = open_checkpoint(path)
    out = {}
    for key in ck.keys():
        value = ck.get(key)
        out[key] = value.dequantize() if isinstance(value, GGUFWeight) else value
    return out
