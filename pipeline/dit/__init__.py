"""The InfiniteTalk DiT (Wan 2.1 I2V 14B + audio cross-attention), numerically faithful to the official model.

Loader::

    with torch.device("meta"):
        model = InfiniteTalkDiT(WAN_I2V_14B, attention="sdpa")      # allocates nothing
    model.load_state_dict(state_dict, strict=True, assign=True)     # official key names (1633)
    model.compute_dtype = torch.bfloat16                            # only if weights are not bf16

Every Linear is an ``nn.Linear`` child called as ``self.<name>(x)`` (swap freely); the time MLPs
and ``head.head`` are ``Fp32Linear`` (fp32 input, fp32 output). ``model.blocks`` is a ModuleList,
each block called as ``block(x, e0, inputs)``.

Sampler::

    v = model(x, t, context, clip_fea, y, audio, speaker_masks)  # [B,16,T,h,w] fp32 velocity

with CFG branches on the batch axis (see ``InfiniteTalkDiT.forward``).
"""
from . import fused
from .attention import BACKENDS, attention, check_backend
from .config import WAN_I2V_14B, DiTConfig
from .model import InfiniteTalkDiT, count_parameters

__all__ = ["BACKENDS", "DiTConfig", "InfiniteTalkDiT", "WAN_I2V_14B", "attention", "check_backend",
           "count_parameters", "fused"]
