"""Abandoned render checkpoints removed at the start of each render, so a render cancelled and never queued again
does not keep its minutes of H.264 segments forever.

Policy (each render, before it starts; ``prune``):
1. A checkpoint folder untouched (its newest file) for longer than ``max_age`` (default 7 days) is removed.
2. If the folders together still exceed ``max_bytes`` (default 20 GB), the least recently touched are removed
   until they fit.
Never removed: the folder of the render about to start (it may resume from it), a folder in use (a render in
this process, or one whose owner file names another live process on this machine, or another machine's render
touched within the last day), and anything in the folder that is not a checkpoint folder (named by a render key).
Limits: ``INFINITETALK_CHECKPOINT_MAX_AGE_DAYS`` and ``INFINITETALK_CHECKPOINT_MAX_GB`` (0: no limit).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass

from .resume import in_use

log = logging.getLogger("infinitetalk_lipsync")

MAX_AGE_DAYS = 7.0
MAX_GB = 20.0
_KEY = re.compile(r"[0-9a-f]{40}")  # resume.render_key: blake2b, 20 bytes


@dataclass
class Removed:
    key: str
    bytes: int
    age_s: float
    why: str  # "age" or "size"


def limits() -> tuple[float, float]:
    """(max age in seconds, max total bytes) from the environment, else the defaults; 0 = no limit."""
    def number(name, default):
        try:
            return max(0.0, float(os.environ.get(name, default)))
        except ValueError:
            log.warning("%s=%r is not a number; using %s.", name, os.environ[name], default)
            return default
    return number("INFINITETALK_CHECKPOINT_MAX_AGE_DAYS", MAX_AGE_DAYS) * 86400, \
        number("INFINITETALK_CHECKPOINT_MAX_GB", MAX_GB) * 1e9


def _scan(folder: str) -> tuple[float, int]:
    """(newest mtime of the folder and its files, total bytes)."""
    newest, size = os.stat(folder).st_mtime, 0
    for base, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.stat(os.path.join(base, name))
            except OSError:  # removed meanwhile
                continue
            newest, size = max(newest, st.st_mtime), size + st.st_size
    return newest, size


def prune(root: str, keep: str, max_age_s: float | None = None, max_bytes: float | None = None,
          now: float | None = None) -> list[Removed]:
    """Remove abandoned checkpoint folders under ``root`` (see the module docstring); ``keep``: the key of the
    render about to start. Returns what was removed, oldest first."""
    if max_age_s is None or max_bytes is None:
        env_age, env_bytes = limits()
        max_age_s = env_age if max_age_s is None else max_age_s
        max_bytes = env_bytes if max_bytes is None else max_bytes
    now = time.time() if now is None else now
    folders = []
    try:
        names = os.listdir(root)
    except OSError:
        return []
    for name in names:
        path = os.path.join(root, name)
        if not _KEY.fullmatch(name) or not os.path.isdir(path):
            continue
        try:
            touched, size = _scan(path)
        except OSError:
            continue
        folders.append((touched, name, path, size))
    folders.sort()
    total = sum(f[3] for f in folders)
    removed = []
    for touched, name, path, size in folders:
        age = now - touched
        if name == keep or in_use(path, age):
            continue
        why = "age" if max_age_s and age > max_age_s else "size" if max_bytes and total > max_bytes else None
        if why is None:
            continue
        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(path):
            log.warning("Could not remove the checkpoint folder %s.", path)
            continue
        total -= size
        removed.append(Removed(name, size, age, why))
    return removed


def report(removed: list[Removed], max_age_s: float, max_bytes: float) -> str:
    """One line for the node text / log; '' when nothing was removed."""
    if not removed:
        return ""
    aged = sum(r.why == "age" for r in removed)
    parts = [f"{aged} untouched for over {max_age_s / 86400:g} days"] if aged else []
    if len(removed) > aged:
        parts.append(f"{len(removed) - aged} to stay under {max_bytes / 1e9:g} GB")
    keys = ", ".join(f"{r.key[:10]} ({r.age_s / 86400:.1f} d)" for r in removed[:4])
    more = f", +{len(removed) - 4} more" if len(removed) > 4 else ""
    return (f"Removed {len(removed)} abandoned render checkpoint(s), {sum(r.bytes for r in removed) / 1e6:.0f} MB "
            f"({'; '.join(parts)}): {keys}{more}.")


def prune_and_report(root: str, keep: str) -> str:
    """``prune`` with the configured limits; the report line (also logged)."""
    max_age_s, max_bytes = limits()
    text = report(prune(root, keep, max_age_s, max_bytes), max_age_s, max_bytes)
    if text:
        log.info(text)
    return text
