"""ComfyUI V1 nodes. Each module defines its own NODE_CLASS_MAPPINGS / NODE_DISPLAY_NAME_MAPPINGS;
this file merges them. Node modules reach ComfyUI only through ``host``."""
from . import host
from . import audio
from . import face_stream
from . import frame_count
from . import loader
from . import mask
from . import prompt_schedule
from . import sampler
from . import vocals

# One module per line, so that branches adding nodes merge cleanly.
_MODULES = (
    audio,
    face_stream,
    frame_count,
    loader,
    mask,
    prompt_schedule,
    sampler,
    vocals,
)

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in _MODULES:
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

host.register_model_folders()
