"""The InfiniteTalk DiT (Wan 2.1 I2V 14B + audio cross-attention), numerically faithful to the official model."""
from .attention import BACKENDS, attention, check_backend
from .config import WAN_I2V_14B, DiTConfig
from .model import InfiniteTalkDiT, count_parameters

__all__ = ["BACKENDS", "DiTConfig", "InfiniteTalkDiT", "WAN_I2V_14B", "attention", "check_backend",
           "count_parameters"]
