"""Vocal separation with Mel-Band RoFormer: speech out of music and noise, before wav2vec2 hears it."""
from .loading import load_roformer
from .roformer import MelBandRoformer, RoformerConfig
from .separate import separate_vocals

__all__ = ["MelBandRoformer", "RoformerConfig", "load_roformer", "separate_vocals"]
