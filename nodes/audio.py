"""Audio nodes: load our wav2vec2 encoder, and turn speech (core AUDIO) into InfiniteTalk embeddings."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from . import host
from .managed_model import ManagedOutput, PackPatcher, ensure_loaded
from ..pipeline.audio import compute_audio_embeds, load_wav2vec2
from ..pipeline.audio.preprocess import COMBINE_MODES
from ..pipeline.audio.wav2vec2 import Wav2Vec2Encoder

FOLDER = "wav2vec2"
WEIGHT_EXTS = (".safetensors", ".bin", ".pt", ".pth")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
NORMALIZE = {"auto": None, "on": True, "off": False}


@dataclass
class Wav2VecHandle(ManagedOutput):
    """What flows on INFINITETALK_WAV2VEC: the encoder, where it computes, where it waits, and its memory-manager
    patcher (None: the encoder stays where it is)."""

    model: Wav2Vec2Encoder
    device: torch.device
    offload: torch.device
    name: str
    patcher: PackPatcher | None = None


def checkpoint_choices(files: list[str]) -> list[str]:
    """Model-folder listing -> choices: single weight files, plus each Hugging Face folder
    (one holding config.json) once, as 'folder/'; files inside such folders are not repeated."""
    folders = {os.path.dirname(f).replace("\\", "/") for f in files if os.path.basename(f) == "config.json"}
    folders.discard("")
    singles = [f for f in files if f.lower().endswith(WEIGHT_EXTS)
               and os.path.dirname(f).replace("\\", "/") not in folders]
    return sorted(f + "/" for f in folders) + sorted(singles)


def checkpoint_path(choice: str) -> str:
    """A choice from ``checkpoint_choices`` -> absolute file or folder path."""
    if choice.endswith("/"):
        return os.path.dirname(host.model_path(FOLDER, choice + "config.json"))
    return host.model_path(FOLDER, choice)


class InfiniteTalkAudioEncoderLoader:
    @classmethod
    def INPUT_TYPES(cls):
        choices = checkpoint_choices(host.model_files(FOLDER))
        return {"required": {
            "model_name": (choices, {"tooltip": "wav2vec2-base checkpoint from models/wav2vec2 or models/audio_encoders: "
                                                "a Hugging Face folder (TencentGameMate/chinese-wav2vec2-base, shown as "
                                                "'name/') or one file such as wav2vec2-chinese-base_fp16.safetensors."}),
            "device": (["main_device", "cpu"], {"tooltip": "Where the encoder runs. The official code runs it on CPU; "
                                                           "the GPU is much faster for long audio."}),
            "precision": (list(PRECISIONS), {"tooltip": "Compute precision. fp32 reproduces the official features; "
                                                        "fp16/bf16 save memory on GPU with small feature differences."}),
            "input_normalization": (list(NORMALIZE), {"tooltip": "Zero-mean/unit-variance normalisation of the waveform "
                                                                 "before the encoder. auto: do_normalize from the folder's "
                                                                 "preprocessor_config.json; off for single files."}),
        }}

    RETURN_TYPES = ("INFINITETALK_WAV2VEC",)
    RETURN_NAMES = ("wav2vec",)
    FUNCTION = "load"
    CATEGORY = "InfiniteTalk/loaders"
    DESCRIPTION = "Loads a wav2vec2-base speech encoder (our own implementation; no transformers needed)."

    def load(self, model_name, device, precision, input_normalization):
        path = checkpoint_path(model_name)
        offload = host.offload_device()
        target = host.torch_device() if device == "main_device" else torch.device("cpu")
        dtype = PRECISIONS[precision]
        if target.type == "cpu" and dtype != torch.float32:
            dtype = torch.float32  # half-precision convolutions on CPU are slow and gain nothing here
        model = load_wav2vec2(path, device=offload, dtype=dtype, normalize_input=NORMALIZE[input_normalization])
        patcher = PackPatcher(model, load_device=target, offload_device=offload)
        return (Wav2VecHandle(model, target, offload, os.path.basename(path.rstrip("/\\")), patcher),)


class InfiniteTalkAudioEmbeds:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "wav2vec": ("INFINITETALK_WAV2VEC", {"tooltip": "Encoder from InfiniteTalk Audio Encoder Loader."}),
                "audio": ("AUDIO", {"tooltip": "Speech of speaker 1 (LoadAudio, or the audio of GetVideoComponents). "
                                               "Any sample rate and channel count."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0, "step": 0.01,
                                  "tooltip": "Frame rate of the generated video; one embedding row per frame. "
                                             "InfiniteTalk was trained at 25."}),
                "start_time": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.01,
                                         "tooltip": "Seconds to skip at the start of the (combined) audio."}),
                "end_time": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.01,
                                       "tooltip": "Where the used audio ends, in seconds; 0 = the end of the audio."}),
            },
            "optional": {
                "audio_2": ("AUDIO", {"tooltip": "Speech of speaker 2 (InfiniteTalk Multi, two speakers). "
                                                 "Leave unconnected for one speaker."}),
                "multi_mode": (list(COMBINE_MODES), {"tooltip": "Two speakers only. add: speaker 1 talks, then speaker 2 "
                                                                "(sequential turns). para: both tracks play at the same "
                                                                "time; the shorter is padded with silence."}),
                "soundtrack": ("AUDIO", {"tooltip": "Sound for the video when the speech above is a processed copy of "
                                                    "it, e.g. the full mix whose vocals InfiniteTalk Vocal Separation "
                                                    "gave as 'audio'. Cropped like the speech. Unconnected: the "
                                                    "speech inputs themselves, at their own quality."}),
            },
        }

    RETURN_TYPES = ("INFINITETALK_AUDIO_EMBEDS", "AUDIO", "INT")
    RETURN_NAMES = ("audio_embeds", "audio", "num_frames")
    OUTPUT_TOOLTIPS = ("Per-speaker wav2vec2 features for the InfiniteTalk sampler.",
                       "The sound for the video: the original audio (or soundtrack) at its own sample rate and "
                       "channels, cropped and exactly as long as num_frames.",
                       "Video frames that cover the audio at this fps.")
    FUNCTION = "embed"
    CATEGORY = "InfiniteTalk/audio"
    DESCRIPTION = "Speech -> InfiniteTalk audio embeddings, as the official pipeline (16 kHz, -23 LUFS, wav2vec2)."

    def embed(self, wav2vec, audio, fps, start_time, end_time, audio_2=None, multi_mode="add", soundtrack=None):
        audios = [_audio_input(audio, "audio")]
        if audio_2 is not None:
            audios.append(_audio_input(audio_2, "audio_2"))
        sound = None if soundtrack is None else _audio_input(soundtrack, "soundtrack")
        host.throw_if_interrupted()
        if wav2vec.patcher is not None:
            ensure_loaded(wav2vec.patcher)  # ComfyUI keeps it there until another model needs the room
        embeds, report = compute_audio_embeds(wav2vec.model, audios, mode=multi_mode, fps=fps,
                                              start_s=start_time, end_s=end_time, soundtrack=sound,
                                              interrupt=host.throw_if_interrupted)
        waveform, rate = embeds.output_sound()
        out_audio = {"waveform": waveform[None], "sample_rate": rate}
        return {"ui": {"text": [report.text()]}, "result": (embeds, out_audio, embeds.num_frames)}


def _audio_input(audio, name: str) -> tuple[torch.Tensor, int]:
    if audio is None:
        raise ValueError(f"{name}: no audio arrived (a video without an audio track gives none); "
                         f"connect LoadAudio or a video that has sound.")
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError(f"{name}: expected an AUDIO value (dict with 'waveform' and 'sample_rate'), "
                         f"got {type(audio).__name__}. Connect LoadAudio or GetVideoComponents.")
    return audio["waveform"], audio["sample_rate"]


NODE_CLASS_MAPPINGS = {
    "InfiniteTalkAudioEncoderLoader": InfiniteTalkAudioEncoderLoader,
    "InfiniteTalkAudioEmbeds": InfiniteTalkAudioEmbeds,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InfiniteTalkAudioEncoderLoader": "InfiniteTalk Audio Encoder Loader",
    "InfiniteTalkAudioEmbeds": "InfiniteTalk Audio Embeds",
}
