"""The example workflows against a real ComfyUI: the Templates browser lists and serves them; every node (core and
ours) is known to /object_info with matching inputs, widget values valid; and each, converted to the API format
the frontend queues, passes the server's own /prompt validation (model and media files present as placeholders:
the run then stops at the first loader, which is expected)."""
import json
import urllib.parse
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

import workflow_check as wc
from client.ui_to_api import ui_to_api
from comfyui_harness import PACK_FOLDER

FOLDER = Path(__file__).resolve().parents[2] / "example_workflows"
NAMES = sorted(p.stem for p in FOLDER.glob("*.json"))
MODEL_FOLDERS = {widget: folders[0] for widget, folders in wc.MODEL_INPUTS.items()}  # widget -> models/<folder>
MEDIA = {("LoadVideo", "file"), ("LoadAudio", "audio"), ("LoadImage", "image")}


def test_templates_browser_lists_and_serves_our_workflows(comfy_server):
    listed = comfy_server.get("/workflow_templates")
    assert sorted(listed.get(PACK_FOLDER, [])) == NAMES, listed
    for name in NAMES:
        url = f"{comfy_server.url}/api/workflow_templates/{PACK_FOLDER}/{urllib.parse.quote(name)}"
        with urllib.request.urlopen(url + ".json", timeout=30) as response:
            assert json.loads(response.read()) == wc.load(FOLDER / f"{name}.json")
        with urllib.request.urlopen(url + ".jpg", timeout=30) as response:  # the card's thumbnail
            assert response.read() == (FOLDER / f"{name}.jpg").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_every_node_and_widget_is_valid_for_the_server(comfy_server, name):
    workflow, specs = wc.load(FOLDER / f"{name}.json"), comfy_server.object_info()
    assert wc.check(workflow, specs, require_all=True) == []
    assert wc.model_problems(workflow, specs) == []  # core loaders too: every model file has its download entry
    folders = set(comfy_server.get("/models"))  # the folders the Missing Models dialog can download into
    assert {m["directory"] for m in wc.listed_models(workflow, specs)} <= folders


def _write_media(kind: str, path: Path) -> None:
    av = pytest.importorskip("av")
    if kind == "LoadAudio":
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(np.zeros(1600, np.int16).tobytes())
    elif kind == "LoadImage":
        from PIL import Image
        Image.new("RGB", (32, 32), (90, 60, 40)).save(path)
    else:
        with av.open(str(path), "w") as c:
            stream = c.add_stream("libx264", rate=25)
            stream.width = stream.height = 32
            stream.pix_fmt = "yuv420p"
            for _ in range(3):
                c.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")))
            c.mux(stream.encode())


@pytest.mark.parametrize("name", NAMES)
def test_server_validates_the_api_form(comfy_server, name):
    workflow = wc.load(FOLDER / f"{name}.json")
    specs = comfy_server.object_info()
    prompt = ui_to_api(workflow, specs)
    placeholders = []
    try:
        for node in prompt.values():
            for key, value in node["inputs"].items():
                where = (node["class_type"], key)
                if where in MODEL_FOLDERS:
                    path = comfy_server.models_dir / MODEL_FOLDERS[where] / value
                elif where in MEDIA:
                    path = comfy_server.input_dir / value
                else:
                    continue
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"") if where in MODEL_FOLDERS else _write_media(where[0], path)
                    placeholders.append(path)
        # Accepted by /prompt ("rejected" would be a validation error); the empty model files then fail to load.
        with pytest.raises(RuntimeError, match="workflow failed") as failure:
            comfy_server.run(prompt, timeout=120)
        # It stops at an empty model file, or at the automatic face detection (a blank placeholder video).
        stoppers = {loader for loader, _ in MODEL_FOLDERS} | {"InfiniteTalkFaceMask", "InfiniteTalkFacePlan"}
        assert any(f"failed: {node}: " in str(failure.value) for node in stoppers), str(failure.value)
    finally:
        for path in placeholders:
            path.unlink()
