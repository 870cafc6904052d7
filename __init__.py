"""InfiniteTalk Lip Sync: audio-driven lip-sync video (InfiniteTalk on Wan 2.1 I2V 14B) for ComfyUI.

ComfyUI imports this folder as a package from ``custom_nodes/<any name>``; every
internal import is therefore relative.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
