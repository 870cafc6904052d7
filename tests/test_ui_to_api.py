"""client.ui_to_api on hand-made UI graphs: what the frontend's Export (API) does with seeds' control values,
upload widgets, converted widgets, Reroute and PrimitiveNode, muted and bypassed nodes, list values."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from client.ui_to_api import ConversionError, ui_to_api, widget_slots  # noqa: E402

SPECS = {
    "Load": {"input": {"required": {"image": [["a.png", "b.png"], {"image_upload": True}]}},
             "input_order": {"required": ["image"]}, "output": ["IMAGE"], "display_name": "Load Image"},
    "Audio": {"input": {"required": {"audio": ["COMBO", {"options": [], "audio_upload": True}]}},
              "output": ["AUDIO"], "display_name": "Load Audio"},
    "Blur": {"input": {"required": {"image": ["IMAGE"], "radius": ["INT", {"default": 1}]}},
             "input_order": {"required": ["image", "radius"]}, "output": ["IMAGE"], "display_name": "Blur"},
    "Sample": {"input": {"required": {"image": ["IMAGE"], "seed": ["INT", {}], "mode": [["x", "y"], {}],
                                      "steps": ["INT", {}]},
                         "optional": {"audio": ["AUDIO"], "extra": ["FLOAT", {"forceInput": True}],
                                      "list": ["STRING", {}]}},
               "input_order": {"required": ["image", "seed", "mode", "steps"], "optional": ["audio", "extra", "list"]},
               "output": ["IMAGE"], "display_name": "Sampler"},
}


def _node(id_, type_, widgets=(), inputs=(), outputs=(), mode=0, title=None):
    node = {"id": id_, "type": type_, "mode": mode, "widgets_values": list(widgets),
            "inputs": [dict(i) for i in inputs], "outputs": [dict(o) for o in outputs]}
    if title:
        node["title"] = title
    return node


def _graph(nodes, links):
    return {"nodes": nodes, "links": links, "version": 0.4}


def test_widget_slots_skip_editor_only_values():
    assert widget_slots(SPECS["Load"]) == ["image", None]
    assert widget_slots(SPECS["Audio"]) == ["audio", None, None]
    assert widget_slots(SPECS["Sample"]) == ["seed", None, "mode", "steps", "list"]


def test_widgets_links_titles_and_boxed_lists():
    g = _graph([_node(1, "Load", ["a.png", "image"], outputs=[{"type": "IMAGE", "links": [1]}], title="Source image"),
                _node(2, "Sample", [5, "randomize", "x", 4, ["p", "q"]],
                      inputs=[{"name": "image", "type": "IMAGE", "link": 1},
                              {"name": "steps", "type": "INT", "link": None, "widget": {"name": "steps"}}]),
                _node(3, "Note", ["text"])],
               [[1, 1, 0, 2, 0, "IMAGE"]])
    assert ui_to_api(g, SPECS) == {
        "1": {"inputs": {"image": "a.png"}, "class_type": "Load", "_meta": {"title": "Source image"}},
        "2": {"inputs": {"seed": 5, "mode": "x", "steps": 4, "list": {"__value__": ["p", "q"]}, "image": ["1", 0]},
              "class_type": "Sample", "_meta": {"title": "Sampler"}}}


def test_reroute_primitive_and_converted_widget():
    g = _graph([_node(1, "Load", ["a.png", "image"], outputs=[{"type": "IMAGE", "links": [1]}]),
                _node(2, "Reroute", inputs=[{"name": "", "type": "*", "link": 1}], outputs=[{"type": "IMAGE", "links": [2]}]),
                _node(3, "PrimitiveNode", [77, "fixed"], outputs=[{"type": "INT", "links": [3]}]),
                _node(4, "Sample", [1, "fixed", "y", 4, ""],
                      inputs=[{"name": "image", "type": "IMAGE", "link": 2},
                              {"name": "seed", "type": "INT", "link": 3, "widget": {"name": "seed"}}])],
               [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 4, 0, "IMAGE"], [3, 3, 0, 4, 1, "INT"]])
    api = ui_to_api(g, SPECS)
    assert set(api) == {"1", "4"}
    assert api["4"]["inputs"]["image"] == ["1", 0] and api["4"]["inputs"]["seed"] == 77


def test_bypassed_node_passes_its_matching_input_and_muted_node_drops_what_it_feeds():
    g = _graph([_node(1, "Load", ["a.png", "image"], outputs=[{"type": "IMAGE", "links": [1]}]),
                _node(2, "Blur", [3], inputs=[{"name": "image", "type": "IMAGE", "link": 1}],
                      outputs=[{"type": "IMAGE", "links": [2]}], mode=4),
                _node(3, "Audio", ["s.wav", None, None], outputs=[{"type": "AUDIO", "links": [3]}], mode=2),
                _node(4, "Sample", [1, "fixed", "y", 4, ""],
                      inputs=[{"name": "image", "type": "IMAGE", "link": 2},
                              {"name": "audio", "type": "AUDIO", "link": 3}])],
               [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 4, 0, "IMAGE"], [3, 3, 0, 4, 1, "AUDIO"]])
    api = ui_to_api(g, SPECS)
    assert set(api) == {"1", "4"}
    assert api["4"]["inputs"]["image"] == ["1", 0] and "audio" not in api["4"]["inputs"]


def test_link_objects_of_the_newer_schema():
    g = _graph([_node(1, "Load", ["a.png", "image"], outputs=[{"type": "IMAGE", "links": [9]}]),
                _node(2, "Blur", [2], inputs=[{"name": "image", "type": "IMAGE", "link": 9}])],
               [{"id": 9, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "IMAGE"}])
    assert ui_to_api(g, SPECS)["2"]["inputs"] == {"radius": 2, "image": ["1", 0]}


def test_clear_errors():
    with pytest.raises(ConversionError, match=r"node 1 \(Blur\): 2 widget values saved, .* has 1"):
        ui_to_api(_graph([_node(1, "Blur", [1, 2])], []), SPECS)
    assert ui_to_api(_graph([_node(1, "Load", ["a.png"])], []), SPECS)["1"]["inputs"] == {"image": "a.png"}
    with pytest.raises(ConversionError, match="'Nope' is not known to the server"):
        ui_to_api(_graph([_node(1, "Nope")], []), SPECS)
    with pytest.raises(ConversionError, match="subgraphs"):
        ui_to_api({**_graph([], []), "definitions": {"subgraphs": [{"id": "x"}]}}, SPECS)


def test_comfyui_038_save_video_dynamic_combo_becomes_dotted_keys():
    """0.38.1's SaveVideo (its /object_info entry, tests/data): ``format`` is a DynamicCombo whose chosen option adds
    ``codec``; the frontend sends them as ``format`` and ``format.codec`` (the server re-nests dotted keys)."""
    import json
    specs = json.loads((Path(__file__).parent / "data" / "comfyui_0.38.1_video_nodes.json").read_text())
    spec = specs["SaveVideo"]
    slots = widget_slots(spec, ["video/x", "mp4", "h264"])
    assert slots[:3] == ["filename_prefix", "format", "format.codec"]
    g = _graph([_node(1, "SaveVideo", ["video/x", "mp4", "h264"],
                      inputs=[{"name": "video", "type": "VIDEO", "link": None}])], [])
    inputs = ui_to_api(g, specs)["1"]["inputs"]
    assert inputs["filename_prefix"] == "video/x" and inputs["format"] == "mp4" and inputs["format.codec"] == "h264"


def test_upload_buttons_come_after_every_widget():
    """The frontend appends the upload widget after all of a node's inputs' widgets, so a widget declared after the
    upload combo comes before the upload button's value."""
    spec = {"input": {"required": {"file": [["a.mp4"], {"video_upload": True}], "start": ["FLOAT", {}]}},
            "input_order": {"required": ["file", "start"]}, "output": ["VIDEO"]}
    assert widget_slots(spec) == ["file", "start", None]
    g = _graph([_node(1, "LoadClip", ["a.mp4", 2.5, "image"])], [])
    assert ui_to_api(g, {"LoadClip": spec})["1"]["inputs"] == {"file": "a.mp4", "start": 2.5}
