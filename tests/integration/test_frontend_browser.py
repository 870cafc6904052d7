"""The frontend each ComfyUI serves (1.27 on 0.3.64, 1.35 on 0.8.0), in headless Chromium: show_text.js (public API
only) puts the Frame Count report on the node after a real run, without saving or sending it; and each example
workflow, opened without model files, lists every model file it names in the Missing Models dialog.

Needs node, playwright-core (NODE_PATH or a global install) and Chromium (CHROMIUM=/path, or chromium on PATH);
skipped without them."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import workflow_check as wc
from golden import shared_dir
from comfyui_harness import PACK_FOLDER

SCRIPT = Path(__file__).with_name("frontend_check.js")
EXAMPLES = Path(__file__).resolve().parents[2] / "example_workflows"


def _tools():
    node = shutil.which("node")
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not node or not chromium:
        pytest.skip("browser check: needs node and Chromium (CHROMIUM=/path/to/chromium)")
    found = subprocess.run([node, "-e", "require.resolve('playwright-core')"], capture_output=True, cwd=SCRIPT.parent)
    if found.returncode != 0:
        pytest.skip("browser check: needs the npm package playwright-core (NODE_PATH=.../node_modules)")
    return node, chromium


@pytest.fixture(scope="module")
def frontend(comfyui, request):
    node, chromium = _tools()  # before starting a server for nothing
    comfy_server = request.getfixturevalue("comfy_server")
    source = shared_dir() / "media" / "speech_1.wav" if shared_dir() else None
    if source is None or not source.is_file():
        pytest.skip("shared/media/speech_1.wav not found")
    shutil.copyfile(source, comfy_server.input_dir / "frontend_speech.wav")
    done = subprocess.run([node, str(SCRIPT), comfy_server.url, PACK_FOLDER, "frontend_speech.wav", chromium],
                          capture_output=True, text=True, timeout=900, cwd=SCRIPT.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nComfyUI {comfy_server.version}: frontend {result['version']}")
    return result


def test_report_shown_on_the_node_after_a_run(frontend):
    text = frontend["shown_text"]
    assert text.startswith("audio ") and "policy: cover audio" in text and "window 1:" in text
    assert frontend["dom_text"] == text and frontend["dom_visible"]
    assert text not in json.dumps(frontend["saved"]) and text not in json.dumps(frontend["sent"])  # display only
    assert not [n for n in frontend["notices"] if "Notice" in n], frontend["notices"]  # no internal import


def test_missing_models_dialog_lists_every_model_file(frontend):
    names = sorted(p.stem for p in EXAMPLES.glob("*.json"))
    assert sorted(frontend["missing_models"]) == names
    for name, listed in frontend["missing_models"].items():
        expected = {f"{m['directory']} / {m['name']}" for m in wc.listed_models(wc.load(EXAMPLES / f"{name}.json"), {})}
        assert len(listed) == len(expected) and set(listed) == expected, (name, listed)
