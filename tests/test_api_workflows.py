"""example_workflows/api/*.json are the API-format exports of example_workflows/*.json (the UI files, shown in
the Templates browser) and stay in sync with them: same nodes, widget values and links. Regenerate with
``python -m client.export_api`` after changing a UI workflow."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the client package (top-level folder, not part of the node pack)

from client import export_api, roles  # noqa: E402
from client.ui_to_api import VIRTUAL, widget_slots  # noqa: E402

EXAMPLES = sorted(p.stem for p in (ROOT / "example_workflows").glob("*.json"))


def _ui(name):
    return _load(ROOT / "example_workflows" / f"{name}.json")


def _api(name):
    return _load(export_api.api_path(ROOT / "example_workflows" / f"{name}.json"))
HINT = "the API export is stale: run `python -m client.export_api` and commit example_workflows/api/"


@pytest.fixture(scope="module")
def specs():
    return export_api.offline_specs()


def _load(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def test_every_ui_example_has_an_api_export_and_nothing_else():
    assert EXAMPLES
    expected = sorted(export_api.api_path(ROOT / "example_workflows" / f"{n}.json") for n in EXAMPLES)
    assert sorted(export_api.API_DIR.glob("*.json")) == expected, HINT


@pytest.mark.parametrize("name", EXAMPLES)
def test_api_export_is_what_the_converter_writes(specs, name):
    expected = export_api.render(export_api.export(_ui(name), specs))
    target = export_api.api_path(ROOT / "example_workflows" / f"{name}.json")
    assert target.read_text(encoding="utf-8") == expected, HINT


@pytest.mark.parametrize("name", EXAMPLES)
def test_api_export_has_the_ui_nodes_widgets_and_links(specs, name):
    """Checked against the UI file directly (not through the converter): every executable node, each widget value
    by name, each link as [origin id, origin slot]."""
    ui, api = _ui(name), _api(name)
    nodes = {n["id"]: n for n in ui["nodes"]}
    executable = {str(i) for i, n in nodes.items() if n["type"] not in VIRTUAL and n.get("mode", 0) == 0}
    assert set(api) == executable, HINT
    for link_id, src, src_slot, dst, dst_slot, _ in ui["links"]:
        name_in = nodes[dst]["inputs"][dst_slot]["name"]
        assert api[str(dst)]["inputs"][name_in] == [str(src), src_slot], (link_id, HINT)
    for node_id in executable:
        node, entry = nodes[int(node_id)], api[node_id]
        assert entry["class_type"] == node["type"]
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        for slot, value in zip(widget_slots(specs[node["type"]]), node.get("widgets_values", [])):
            if slot is not None and slot not in linked:
                assert entry["inputs"][slot] == value, (node_id, slot, HINT)
        declared = {k for section in specs[node["type"]]["input"].values() for k in section}
        assert set(entry["inputs"]) <= declared


@pytest.mark.parametrize("name", EXAMPLES)
def test_inputs_a_script_changes_are_found_by_title(name):
    api = _api(name)
    titles = {n["_meta"]["title"]: n["class_type"] for n in api.values()}
    i2v = "i2v" in name.lower()
    source = "Source image" if i2v else "Source video"
    assert titles[source] == ("LoadImage" if i2v else "LoadVideo")
    assert titles["Audio"] == "LoadAudio" and titles["Prompt"] == "CLIPTextEncode"
    assert titles["InfiniteTalk Sampler"] == "InfiniteTalkSampler" and titles["Save Video"] == "SaveVideo"
    assert len(titles) == len(api), "titles are unique"
    for role in ("source", "audio", "prompt", "sampler", "output"):
        assert roles.find(api, role) is not None


def test_api_folder_is_not_listed_as_templates():
    """ComfyUI (0.3.64, 0.8.0, 0.38) lists <pack>/example_workflows/*.json, not sub-folders; the integration test
    test_templates_browser_lists_and_serves_our_workflows checks a real server's list."""
    assert export_api.API_DIR.parent.name == "example_workflows" and export_api.API_DIR.name == "api"
    assert not list(export_api.API_DIR.glob("*/"))
