"""Speech -> wav2vec2 features for InfiniteTalk (our own wav2vec2-base, no transformers)."""
from .embeds import AudioEmbeds
from .features import AudioReport, compute_audio_embeds, embed_track, frame_count
from .wav2vec2 import Wav2Vec2Config, Wav2Vec2Encoder
from ..loading.errors import CheckpointError
from .wav2vec2_loading import load_wav2vec2

__all__ = ["AudioEmbeds", "AudioReport", "CheckpointError", "Wav2Vec2Config", "Wav2Vec2Encoder",
           "compute_audio_embeds", "embed_track", "frame_count", "load_wav2vec2"]
