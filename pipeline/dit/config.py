"""DiT hyper-parameters, under the official ``WanModel`` argument names.

``DiTConfig.from_dict`` reads the Wan2.1-I2V ``config.json`` (or the golden tiny config);
the InfiniteTalk arguments default to the values the official pipeline builds with.
"""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class DiTConfig:
    dim: int = 5120
    ffn_dim: int = 13824
    num_heads: int = 40
    num_layers: int = 40
    in_dim: int = 36
    out_dim: int = 16
    freq_dim: int = 256
    text_dim: int = 4096
    text_len: int = 512
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    # InfiniteTalk audio adapter (WanModel defaults).
    audio_window: int = 5
    intermediate_dim: int = 512
    output_dim: int = 768
    context_tokens: int = 32
    vae_scale: int = 4
    # Fixed inside the official classes (not WanModel arguments).
    clip_dim: int = 1280
    clip_tokens: int = 257
    audio_layers: int = 12
    audio_channels: int = 768
    class_range: int = 24
    class_interval: int = 4

    def __post_init__(self):
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise ValueError(f"DiTConfig: dim {self.dim} must split into {self.num_heads} heads of even size")
        if self.patch_size != (1, 2, 2):
            raise ValueError(f"DiTConfig: patch_size {self.patch_size} unsupported (InfiniteTalk uses (1, 2, 2))")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_pairs(self) -> tuple[int, int, int]:
        """Complex pairs of the head dim rotated by (frame, row, column) positions."""
        half = self.head_dim // 2
        return half - 2 * (half // 3), half // 3, half // 3

    @property
    def audio_window_vf(self) -> int:
        """Embedding frames seen by each latent frame after the first (8 for the 14B)."""
        return self.audio_window + self.vae_scale - 1

    # Official arguments we accept only at the one value InfiniteTalk uses.
    _FIXED = {"model_type": "i2v", "qk_norm": True, "cross_attn_norm": True, "window_size": (-1, -1),
              "norm_input_visual": True, "norm_output_audio": True}

    @classmethod
    def from_dict(cls, values: dict) -> "DiTConfig":
        """Build from official ``config.json``-style keys; unknown keys starting with ``_`` are ignored."""
        names = {f.name for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key.startswith("_"):
                continue
            if key in cls._FIXED:
                want = cls._FIXED[key]
                got = tuple(value) if isinstance(value, list) else value
                if got != want:
                    raise ValueError(f"DiT config: {key}={value!r} is not supported (InfiniteTalk needs {want!r})")
            elif key in names:
                kwargs[key] = tuple(value) if key == "patch_size" else value
            else:
                raise ValueError(f"DiT config: unknown key {key!r}")
        return cls(**kwargs)


WAN_I2V_14B = DiTConfig()
