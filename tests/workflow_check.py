"""Check ComfyUI UI-format workflows (what the editor saves: nodes with positional ``widgets_values``,
``links`` [id, from_node, from_slot, to_node, to_slot, type]) against node specs (the conversion to the API format
``/prompt`` takes is ``client.ui_to_api``).

Specs are ``/object_info`` entries ({"input": {"required"/"optional": {name: [type, opts]}}, "input_order",
"output", "output_name"}); ``specs_from_mappings`` builds the same from NODE_CLASS_MAPPINGS without ComfyUI.
The frontend stores extra values after some widgets: the seed's "control after generate" mode (right after it), and
the upload widgets of LoadImage / LoadVideo (one value) and LoadAudio (two), after all of the node's widgets (an
"upload" input the frontend appends); ``client.ui_to_api.widget_slots`` models that, for this check and for the
batch client alike. A V3
DynamicCombo's chosen option adds its own widgets ("format.codec", ...) right after it (frontend 1.53
dynamicWidgets.ts). Values are restored by position; a saved list may stop early where only optional widgets, nested
widgets or frontend-only values remain: the frontend keeps their defaults. That is how a workflow saved for one
ComfyUI loads on another whose nodes grew optional widgets (0.38: CreateVideo, SaveVideo, LoadVideo's ``edit``).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the client package: one rule for widget positions
from client.ui_to_api import (DYNAMIC, VIRTUAL, declared_inputs, dynamic_options, entry_type,  # noqa: E402
                              is_widget, options, widget_slot_entries, widget_slots)

# Model-file widgets -> the model folders their node reads (the first is where a download belongs by default).
MODEL_INPUTS = {
    ("CLIPLoader", "clip_name"): ("text_encoders", "clip"),
    ("CLIPVisionLoader", "clip_name"): ("clip_vision",),
    ("VAELoader", "vae_name"): ("vae",),
    ("InfiniteTalkLoRA", "lora"): ("loras",),
    ("InfiniteTalkModelLoader", "model"): ("diffusion_models", "unet"),
    ("InfiniteTalkModelLoader", "infinitetalk_model"): ("diffusion_models", "model_patches"),
    ("InfiniteTalkAudioEncoderLoader", "model_name"): ("wav2vec2", "audio_encoders"),
    ("InfiniteTalkSAM2Loader", "model"): ("sam2",),
    ("InfiniteTalkVocalSeparation", "model_name"): ("diffusion_models", "vocal_separation"),
}
# What the frontend's Missing Models dialog downloads (MissingModelsWarning.vue: allowedSources/allowedSuffixes).
DOWNLOAD_SOURCES = ("https://huggingface.co/", "https://civitai.com/")
DOWNLOAD_SUFFIXES = (".safetensors", ".sft")
_FILE_NAME = re.compile(r"(\.[A-Za-z0-9]{2,12}|/)$")  # a model/media file (or HF folder) name, not a fixed choice


def load(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def specs_from_mappings(mappings: dict) -> dict:
    """NODE_CLASS_MAPPINGS -> {class_type: /object_info-like spec} (model-file combos are empty outside ComfyUI)."""
    specs = {}
    for name, cls in mappings.items():
        types = cls.INPUT_TYPES()
        specs[name] = {"input": {k: v for k, v in types.items() if k in ("required", "optional")},
                       "input_order": {k: list(types.get(k, {})) for k in ("required", "optional")},
                       "output": list(cls.RETURN_TYPES),
                       "output_name": list(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES)}
    return specs


def _choices(entry: list):
    if entry_type(entry) == DYNAMIC:
        return list(dynamic_options(entry))
    return entry[0] if isinstance(entry[0], list) else options(entry).get("options")


def check_value(name: str, entry: list, value) -> str | None:
    """Why ``value`` is not valid for input ``entry`` (None when it is). A combo value that names a file not present
    (models, media) is accepted: the example workflows name files users download."""
    kind, opts = entry_type(entry), options(entry)
    if kind == "INT":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name}: {value!r} is not an INT"
    elif kind == "FLOAT":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{name}: {value!r} is not a FLOAT"
    elif kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}: {value!r} is not a BOOLEAN"
    elif kind == "STRING":
        return None if isinstance(value, str) else f"{name}: {value!r} is not a STRING"
    elif kind == "VIDEO_EDIT":  # frontend 1.53 videoedit widget: {"trim": {...}, "crop": {...}}
        if not isinstance(value, dict) or not set(value) <= {"trim", "crop"}:
            return f"{name}: {value!r} is not a VIDEO_EDIT value (a dict of trim / crop)"
    elif kind in ("COMBO", DYNAMIC):
        choices = _choices(entry) or []
        if value not in choices and not (isinstance(value, str) and _FILE_NAME.search(value)):
            return f"{name}: {value!r} is not one of {choices}"
    if kind in ("INT", "FLOAT"):
        if "min" in opts and value < opts["min"]:
            return f"{name}: {value} < min {opts['min']}"
        if "max" in opts and value > opts["max"]:
            return f"{name}: {value} > max {opts['max']}"
    if kind == "INT" and opts.get("step", 1) > 1 and (value - opts.get("min", 0)) % opts["step"]:
        # The editor snaps INT widgets to min + k*step (e.g. windows of 4n+1 frames, sizes of 16n pixels).
        return f"{name}: {value} is not min {opts.get('min', 0)} + a multiple of step {opts['step']}"
    return None


def check(workflow: dict, specs: dict, require_all: bool = False, grown_outputs: bool = False) -> list[str]:
    """Problems of a UI-format workflow: unknown nodes (all, with ``require_all``; else only those of ``specs``
    are checked in depth), widget counts and values, and link consistency against both ends and the specs.
    ``grown_outputs``: saved outputs may be the first ones of a node that has more now (a newer ComfyUI)."""
    problems = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    if len(nodes) != len(workflow["nodes"]):
        problems.append("duplicate node ids")
    for n in workflow["nodes"]:
        where = f"node {n['id']} ({n['type']})"
        if n["type"] in VIRTUAL:
            continue
        spec = specs.get(n["type"])
        if spec is None:
            if require_all:
                problems.append(f"{where}: class not known to the server")
            continue
        values = n.get("widgets_values", [])
        slots = widget_slot_entries(spec, values)
        if len(values) > len(slots) or not all(may_default for _, _, may_default in slots[len(values):]):
            problems.append(f"{where}: {len(values)} widgets_values, expected {len(slots)} "
                            f"({[s for s, _, _ in slots]})")
        else:
            for (name, entry, _), value in zip(slots, values):
                if name is not None and (err := check_value(name, entry, value)):
                    problems.append(f"{where}: {err}")
        declared = {name: (entry, optional) for name, entry, optional in declared_inputs(spec)}
        linked = {i["name"] for i in n.get("inputs", []) if i.get("link") is not None}
        for i in n.get("inputs", []):
            if i["name"] not in declared:
                problems.append(f"{where}: input socket {i['name']!r} is not an input of the node")
            elif is_widget(declared[i["name"]][0]) and "widget" not in i:
                problems.append(f"{where}: widget input {i['name']!r} has a socket without 'widget'")
        for name, (entry, optional) in declared.items():
            if not optional and not is_widget(entry) and name not in linked:
                problems.append(f"{where}: required input {name!r} is not connected")
        saved = [o["type"] for o in n.get("outputs", [])]
        if saved != list(spec["output"])[:len(saved)] or (not grown_outputs and len(saved) != len(spec["output"])):
            # A node that gained outputs since the save (0.38: GetVideoComponents 3 -> 5, SaveVideo 0 -> 1) loads
            # with them appended, links kept by slot: ``grown_outputs`` accepts that.
            problems.append(f"{where}: outputs {saved} != {spec['output']}")
    problems += _check_links(workflow, nodes, specs)
    return problems


def model_problems(workflow: dict, specs: dict) -> list[str]:
    """Model widgets the frontend's Missing Models dialog would not list: it lists a node's ``properties.models``
    entries whose ``name`` is one of the node's widget values (one per url), offers to download them from
    Hugging Face / Civitai (.safetensors / .sft) into ``directory``, which must be a model folder of the server."""
    problems = []
    for n in workflow["nodes"]:
        if n["type"] not in specs:
            continue
        values = {name: v for name, v in zip(widget_slots(specs[n["type"]]), n.get("widgets_values", [])) if name}
        entries = {m.get("name"): m for m in (n.get("properties") or {}).get("models", [])}
        for (kind, name), folders in MODEL_INPUTS.items():
            if kind != n["type"] or name not in values:
                continue
            where = f"node {n['id']} ({kind}.{name} = {values[name]!r})"
            entry = entries.get(values[name])
            if entry is None:
                problems.append(f"{where}: no properties.models entry named {values[name]!r}")
                continue
            if entry.get("directory") not in folders:
                problems.append(f"{where}: directory {entry.get('directory')!r} is not one the node reads {folders}")
            url = entry.get("url", "")
            if not url.startswith(DOWNLOAD_SOURCES) or not values[name].endswith(DOWNLOAD_SUFFIXES):
                problems.append(f"{where}: the frontend will not download {url!r}")
            elif url.split("?")[0].rsplit("/", 1)[-1] != values[name]:
                problems.append(f"{where}: url {url!r} is not the file {values[name]!r}")
    return problems


def listed_models(workflow: dict, specs: dict) -> list[dict]:
    """The models the Missing Models dialog lists for ``workflow`` when none is present (one per url)."""
    seen, out = set(), []
    for n in workflow["nodes"]:
        values = set(v for v in n.get("widgets_values") or [] if isinstance(v, str) and v.strip())
        for m in (n.get("properties") or {}).get("models", []):
            if m.get("name") in values and m.get("url") and m["url"] not in seen:
                seen.add(m["url"])
                out.append(m)
    return out


def _check_links(workflow, nodes, specs) -> list[str]:
    problems = []
    ids = [l[0] for l in workflow["links"]]
    if len(set(ids)) != len(ids):
        problems.append("duplicate link ids")
    if workflow.get("last_link_id", 0) < max(ids, default=0) or workflow.get("last_node_id", 0) < max(nodes, default=0):
        problems.append("last_link_id / last_node_id smaller than an id in use")
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        where = f"link {link_id} ({src}:{src_slot} -> {dst}:{dst_slot})"
        if src not in nodes or dst not in nodes:
            problems.append(f"{where}: unknown node")
            continue
        outputs, inputs = nodes[src].get("outputs", []), nodes[dst].get("inputs", [])
        if src_slot >= len(outputs) or link_id not in (outputs[src_slot].get("links") or []):
            problems.append(f"{where}: not listed on the output")
            continue
        if dst_slot >= len(inputs) or inputs[dst_slot].get("link") != link_id:
            problems.append(f"{where}: not the link of the input")
            continue
        out_type, target = outputs[src_slot]["type"], inputs[dst_slot]
        if not (kind == out_type == target["type"]):
            problems.append(f"{where}: types differ: link {kind}, output {out_type}, input {target['type']}")
        if nodes[src]["type"] in specs and specs[nodes[src]["type"]]["output"][src_slot] != kind:
            problems.append(f"{where}: {nodes[src]['type']} output {src_slot} is "
                            f"{specs[nodes[src]['type']]['output'][src_slot]}, link says {kind}")
        if nodes[dst]["type"] in specs:
            declared = {name: entry for name, entry, _ in declared_inputs(specs[nodes[dst]["type"]])}
            entry = declared.get(target["name"])
            if entry is not None and entry_type(entry) != kind:
                problems.append(f"{where}: {nodes[dst]['type']}.{target['name']} takes {entry_type(entry)}, gets {kind}")
    for n in workflow["nodes"]:  # every link a node mentions exists
        for i in n.get("inputs", []):
            if i.get("link") is not None and i["link"] not in ids:
                problems.append(f"node {n['id']}: input {i['name']} names missing link {i['link']}")
        for o in n.get("outputs", []):
            for l in o.get("links") or []:
                if l not in ids:
                    problems.append(f"node {n['id']}: output {o['name']} names missing link {l}")
    return problems
