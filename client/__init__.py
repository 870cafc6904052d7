"""Batch dubbing over ComfyUI's HTTP API (``python -m client.batch``), and the UI -> API workflow converter.

Standard library only, never imported by ComfyUI (the pack's ``__init__`` does not import it)."""
