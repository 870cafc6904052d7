"""What a render will cost, known before its first step: windows, model forwards, frames, and the memory it
needs (host RAM it adds, GPU memory of the weights and of one forward's activations), with the setting that
fixes a render that cannot fit.

Estimates, not measurements: activations are taken as ~(12 x dim + 2 x ffn) values per token per branch in
the batch (attention with a fused kernel, FFN hidden, residual and modulation tensors; not yet checked against
a GPU peak); host RAM counts what the render allocates on top of its inputs.
"""
from __future__ import annotations

from dataclasses import dataclass

GIB = 2 ** 30
# uint8 source frames the streamed reader keeps decoded (video/reader.CACHE_FRAMES)
_SOURCE_CACHE_FRAMES = 34
# float32 copies of one window's frames alive at once (decoded, colour-matched, the kept slice in the writer)
_WINDOW_COPIES = 3


@dataclass
class Budget:
    windows: int
    forwards: int
    frames: int
    host_window_bytes: int     # per-window buffers + the streamed source's frame cache
    host_frames_bytes: int     # the IMAGE output, when something uses it (0 otherwise)
    weight_bytes: int          # the DiT's parameters and buffers on the compute device
    activation_bytes: int      # one forward's peak activations

    @property
    def host_bytes(self) -> int:
        return self.host_window_bytes + self.host_frames_bytes

    def lines(self, host_free: int | None, device_free: int | None) -> list[str]:
        gib = lambda b: f"{b / GIB:.2f} GiB"  # noqa: E731
        out = [f"plan: {self.windows} windows, {self.forwards} model forwards, {self.frames} frames",
               f"host RAM added: ~{gib(self.host_bytes)} (window buffers {gib(self.host_window_bytes)}"
               + (f", frames output {gib(self.host_frames_bytes)}" if self.host_frames_bytes else "")
               + (f"; {gib(host_free)} available)" if host_free is not None else ")"),
               f"GPU: weights {gib(self.weight_bytes)} resident, ~{gib(self.activation_bytes)} per forward"
               + (f" ({gib(device_free)} free)" if device_free is not None else "")]
        return out

    def check(self, host_free: int | None, device_free: int | None, batch_branches: bool) -> None:
        """Raise ValueError naming the fix when the render cannot fit."""
        if host_free is not None and self.host_bytes > 0.9 * host_free:
            fix = ("disconnect the frames (IMAGE) output and save the video output with SaveVideo: it streams to "
                   "disk at flat memory" if self.host_frames_bytes else "lower the resolution or the window")
            raise ValueError(f"This render needs ~{self.host_bytes / GIB:.1f} GiB more host RAM but "
                             f"{host_free / GIB:.1f} GiB is available: {fix}.")
        if device_free is not None and self.activation_bytes > device_free:
            fix = ("set batch_branches off (one guidance branch at a time)" if batch_branches else
                   "raise blocks_to_swap in the model loader, or lower the resolution / window")
            raise ValueError(f"One model forward needs ~{self.activation_bytes / GIB:.1f} GiB of GPU memory, "
                             f"{device_free / GIB:.1f} GiB is free: {fix}.")


def estimate(*, windows: int, steps_run: int, branches: int, frames: int, window: int, th: int, tw: int,
             model, batch_branches: bool, keep_frames: bool, source_hw: tuple[int, int] | None,
             activation_bytes_per_value: int = 2, output_hw: tuple[int, int] | None = None) -> Budget:
    """model: the DiT (its ``config``: dim, ffn_dim, patch_size; its parameters for the weight bytes).
    source_hw: the streamed source's frame size (None for an IMAGE source, already in memory).
    output_hw: the output frames' size when it is not (th, tw) (face-only: pasted into the source frames)."""
    config = getattr(model, "config", None)
    dim, ffn = getattr(config, "dim", 5120), getattr(config, "ffn_dim", 13824)
    patch = getattr(config, "patch_size", (1, 2, 2))
    tokens = (1 + (window - 1) // 4) * (th // 8 // patch[1]) * (tw // 8 // patch[2])
    batch = branches if batch_branches else 1
    activations = batch * tokens * (12 * dim + 2 * ffn) * activation_bytes_per_value
    weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())
                  if t.device.type != "cpu")
    per_window = _WINDOW_COPIES * window * th * tw * 3 * 4
    cache = 0 if source_hw is None else _SOURCE_CACHE_FRAMES * source_hw[0] * source_hw[1] * 3
    out_h, out_w = output_hw or (th, tw)
    return Budget(windows=windows, forwards=windows * steps_run * branches, frames=frames,
                  host_window_bytes=per_window + cache,
                  host_frames_bytes=frames * out_h * out_w * 3 * 4 if keep_frames else 0,
                  weight_bytes=weights, activation_bytes=activations)
