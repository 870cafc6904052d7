"""Session fixture ``comfy_server``: a real ComfyUI (--cpu, temp base dir) with this pack installed.

Gives ``.url``, ``.models_dir`` / ``.input_dir`` / ``.output_dir`` (Path), ``.object_info()``,
``.run(prompt, timeout=...) -> /history entry`` (raises with the server's error), ``.get(path)``
and ``.log()``. Skips (one line) when no ComfyUI is found; the server is always shut down.
"""
import pytest

from comfyui_harness import ComfyServer, ComfyUINotFound, comfyui_python, find_comfyui


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    try:
        comfyui = find_comfyui()
    except ComfyUINotFound as e:
        pytest.skip(str(e))
    server = ComfyServer(comfyui, tmp_path_factory.mktemp("comfyui"), comfyui_python(comfyui))
    try:
        server.start()
        yield server
    finally:
        server.stop()
