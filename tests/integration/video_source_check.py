"""Run inside a ComfyUI's python (cwd = the ComfyUI folder; argv: the pack folder, a scratch folder): build small
clips (plain; with a 90/180/270 display matrix), wrap each in that ComfyUI's own VideoFromFile, and compare what the
pack streams (host.video_source -> reader.VideoFile) with core's get_components(). Prints one JSON object."""
import importlib.util
import json
import sys
from pathlib import Path

pack, scratch = Path(sys.argv[1]), Path(sys.argv[2])
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, ".")
sys.path.insert(0, str(pack / "tests"))
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import utils  # noqa: E402,F401 - ComfyUI's utils/ package first, as main.py binds it

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from comfy_api.input_impl import VideoFromFile  # noqa: E402

spec = importlib.util.spec_from_file_location("infinitetalk_lipsync", pack / "__init__.py",
                                              submodule_search_locations=[str(pack)])
module = importlib.util.module_from_spec(spec)
sys.modules["infinitetalk_lipsync"] = module
spec.loader.exec_module(module)
from infinitetalk_lipsync.nodes import host, host_video  # noqa: E402
from infinitetalk_lipsync.pipeline.video.reader import VideoFile  # noqa: E402
from mp4_rotation import set_rotation  # noqa: E402


def clip(path, rotation=0):
    rng = np.random.default_rng(2)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = 40, 24, "yuv420p", {"g": "8"}
        for _ in range(30):
            c.mux(s.encode(av.VideoFrame.from_ndarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8), "rgb24")))
        c.mux(s.encode(None))
    if rotation:
        set_rotation(str(path), rotation)
    return str(path)


result = {}
for rotation in (0, 90, 180, 270):
    video = VideoFromFile(clip(scratch / f"clip{rotation}.mp4", rotation))
    core = video.get_components().images
    kind, value = host.video_source(video, "source_video")
    reader = VideoFile(*value)
    streamed = torch.stack([reader.image(i) for i in range(reader.num_frames)])
    turns = rotation // 90
    result[str(rotation)] = {
        "kind": kind, "rule": value[4], "core_shape": list(core.shape), "streamed_shape": list(streamed.shape),
        "equal": streamed.shape == core.shape and bool(torch.equal(streamed, core)),
        "equal_to_core_turned_upright": bool(torch.equal(streamed, torch.rot90(core, k=turns, dims=(1, 2)))),
    }
print(json.dumps(result))
