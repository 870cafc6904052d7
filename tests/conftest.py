"""Import the pack as a package (as ComfyUI does) without ComfyUI, whatever this folder is named."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = "infinitetalk_lipsync"

if PACK not in sys.modules:
    _spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[PACK] = _module
    _spec.loader.exec_module(_module)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _render_dir(tmp_path, monkeypatch):
    """The sampler node writes its videos and render checkpoints under the test's own folder."""
    monkeypatch.setenv("INFINITETALK_RENDER_DIR", str(tmp_path / "renders"))


@pytest.fixture(scope="module")
def ref():
    """The golden tiny DiT's state dict (float32, official names): what the loading tests write in every format."""
    import loading_files
    return loading_files.reference()
