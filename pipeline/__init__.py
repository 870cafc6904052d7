"""The InfiniteTalk diffusion core: plain PyTorch, never imports ComfyUI.

Data path: audio -> embeddings -> window plan -> denoise -> decode -> composite -> video.
"""
