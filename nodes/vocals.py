"""InfiniteTalk Vocal Separation: AUDIO -> vocals + accompaniment with Mel-Band RoFormer, so that music and noise
under the voice do not drive the lips. The sound of the video should stay the original mix (Audio Embeds'
``soundtrack`` input)."""
from __future__ import annotations

import math
import time

import torch

from . import host
from ..pipeline.separation import load_roformer, separate_vocals

FOLDER = "vocal_separation"
WEIGHT_EXTS = (".safetensors", ".sft", ".pt", ".pth", ".bin", ".ckpt")
MODEL_BYTES = 228_203_172 * 4  # Kijai's vocal model, computed in fp32


def model_choices() -> list[str]:
    """Files in models/vocal_separation, plus Mel-Band RoFormer files (name containing 'roformer') in
    models/diffusion_models; the DiT files that share that folder are left out."""
    shared = set(host.model_files("diffusion_models"))
    return sorted(f for f in host.model_files(FOLDER) if f.lower().endswith(WEIGHT_EXTS)
                  and (f not in shared or "roformer" in f.lower()))


def _level(x: torch.Tensor) -> str:
    rms = x.double().pow(2).mean().sqrt().item()
    return "silent" if rms == 0 else f"{20 * math.log10(rms):.1f} dBFS"


class InfiniteTalkVocalSeparation:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "audio": ("AUDIO", {"tooltip": "The mixed soundtrack (speech with music, noise or effects under it). "
                                           "Any sample rate, mono or stereo."}),
            "model_name": (model_choices(), {"tooltip": "Mel-Band RoFormer vocal model, e.g. Kijai's "
                                                        "MelBandRoformer_fp16.safetensors, from models/vocal_separation "
                                                        "or models/diffusion_models."}),
            "device": (["main_device", "cpu"], {"tooltip": "Where the model runs. The GPU takes about 2 s per minute of "
                                                           "audio (H100); the CPU works, slowly."}),
        }}

    RETURN_TYPES = ("AUDIO", "AUDIO")
    RETURN_NAMES = ("vocals", "accompaniment")
    OUTPUT_TOOLTIPS = ("The voice alone, at the input's rate and channels: connect it to InfiniteTalk Audio Embeds "
                       "'audio'.",
                       "Everything else (input - vocals, so the two add up to the input).")
    FUNCTION = "separate"
    CATEGORY = "InfiniteTalk/audio"
    DESCRIPTION = ("Separates the voice from music and noise (Mel-Band RoFormer, as Kijai's MelBandRoFormer node) so "
                   "the lips follow the speech only. Use it when something plays under the voice; skip it for clean "
                   "studio speech. Keep the original mix as the video's sound: connect the same audio to Audio "
                   "Embeds 'soundtrack'.")

    def separate(self, audio, model_name, device):
        if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
            raise ValueError(f"audio: expected an AUDIO value (dict with 'waveform' and 'sample_rate'), got "
                             f"{type(audio).__name__}. Connect LoadAudio or the audio of GetVideoComponents.")
        path = host.model_path(FOLDER, model_name)
        target = host.torch_device() if device == "main_device" else torch.device("cpu")
        if target.type != "cpu":
            host.free_memory(MODEL_BYTES, target)
        model = load_roformer(path, device=target)
        bar = []

        def progress(done: int, total: int) -> None:
            if not bar:
                bar.append(host.Progress(total))
            bar[0].update(1)

        start = time.perf_counter()
        try:
            vocals, accompaniment = separate_vocals(model, audio["waveform"], audio["sample_rate"],
                                                    interrupt=host.throw_if_interrupted, progress=progress)
        finally:
            del model
            host.soft_empty_cache()
        rate = int(audio["sample_rate"])
        channels, length = vocals.shape
        text = (f"{length / rate:.2f} s, {rate} Hz, {channels} ch: {bar[0].total if bar else 0} chunks in "
                f"{time.perf_counter() - start:.1f} s on {target.type}; vocals {_level(vocals)}, "
                f"accompaniment {_level(accompaniment)}")
        host.show_text(None, text)
        return {"ui": {"text": [text]},
                "result": ({"waveform": vocals[None], "sample_rate": rate},
                           {"waveform": accompaniment[None], "sample_rate": rate})}


NODE_CLASS_MAPPINGS = {"InfiniteTalkVocalSeparation": InfiniteTalkVocalSeparation}
NODE_DISPLAY_NAME_MAPPINGS = {"InfiniteTalkVocalSeparation": "InfiniteTalk Vocal Separation"}
