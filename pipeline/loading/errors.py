"""One error type for every checkpoint problem, with a message a user can act on."""
from __future__ import annotations

import os


class CheckpointError(ValueError):
    """A checkpoint cannot be used as given.

    The message names the file, what was found, what was expected, the first offending
    keys (at most 5) and the likely fix."""

    __module__ = "infinitetalk"  # ComfyUI shows "infinitetalk.CheckpointError", not the install path

    def __init__(self, path, problem: str, *, found: str = "", expected: str = "", keys=(), fix: str = ""):
        name = os.path.basename(str(path)) if path else "<state dict>"
        parts = [f"{name}: {problem}"]
        if found:
            parts.append(f"found: {found}")
        if expected:
            parts.append(f"expected: {expected}")
        keys = list(keys)
        if keys:
            more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
            parts.append("first offending keys: " + ", ".join(keys[:5]) + more)
        if fix:
            parts.append(f"fix: {fix}")
        if path:
            parts.append(f"file: {path}")
        super().__init__("\n  ".join(parts))
        self.path = str(path) if path else None
        self.keys = keys
