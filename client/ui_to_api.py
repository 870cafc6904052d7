"""UI-format workflow (what the editor saves) -> API format (what ``/prompt`` takes), as the frontend's
"Export (API)" does (ComfyUI_frontend ``graphToPrompt`` + litegraph ``ExecutableNodeDTO``):

- node ids as strings, ``class_type``, ``_meta.title`` (the node's title, else the definition's display name);
- ``inputs``: every widget by name (positional ``widgets_values`` matched against the node definition's inputs,
  skipping values only the editor keeps: a seed's "control after generate" mode, upload buttons, the audio
  player), then links ``[origin id, origin slot]``, which override widgets converted to inputs;
- frontend-only nodes (notes, Reroute, PrimitiveNode) are not sent: links are followed through Reroutes, a
  PrimitiveNode's value goes to the widget it drives;
- muted nodes (mode 2) are dropped with the inputs they fed; bypassed nodes (mode 4) pass an input of the
  matching type through (the same slot first, else the first input of that type), else the input is dropped.

``specs`` are ``/object_info`` entries. Subgraphs and group nodes are refused (unpack them in the editor).
"""
from __future__ import annotations

MUTED, BYPASS = 2, 4
VIRTUAL = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}  # frontend-only: never sent to the server
DYNAMIC = "COMFY_DYNAMICCOMBO_V3"  # V3 DynamicCombo (0.38's SaveVideo): a combo whose choice adds nested widgets
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", DYNAMIC, "VIDEO_EDIT"}
SEED_NAMES = ("seed", "noise_seed")  # the frontend gives these INT widgets a control_after_generate value
_UPLOADS = ("audio_upload", "image_upload", "video_upload", "animated_image_upload")


class ConversionError(ValueError):
    pass


def entry_type(entry: list) -> str:
    return "COMBO" if isinstance(entry[0], list) else entry[0]


def options(entry: list) -> dict:
    return entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}


def dynamic_options(entry: list) -> dict:
    """A DynamicCombo's choices -> the inputs each adds ({"required": {...}, "optional": {...}})."""
    return {o["key"]: o.get("inputs", {}) for o in options(entry).get("options", [])}


def declared_inputs(spec: dict) -> list[tuple[str, list, bool]]:
    """(name, [type, options], optional) in the order the node declares them."""
    out = []
    for section in ("required", "optional"):
        declared = spec.get("input", {}).get(section, {}) or {}
        for name in spec.get("input_order", {}).get(section, list(declared)):
            if name in declared:
                out.append((name, list(declared[name]), section == "optional"))
    return out


def is_widget(entry: list) -> bool:
    return entry_type(entry) in WIDGET_TYPES and not options(entry).get("forceInput")


def _editor_only_values(name: str, entry: list) -> int:
    """How many values the editor stores for this widget that are not inputs."""
    opts, kind = options(entry), entry_type(entry)
    if opts.get("audio_upload"):
        return 2  # audio player + upload button
    if any(opts.get(k) for k in _UPLOADS):
        return 1  # upload button
    if kind in ("INT", "COMBO") and (opts.get("control_after_generate") or (kind == "INT" and name in SEED_NAMES)):
        return 1  # control after generate
    return 0


def widget_slot_entries(spec: dict, values: list | None = None) -> list[tuple[str | None, list | None, bool]]:
    """(input name, spec entry, may be missing) per position of ``widgets_values``; (None, None, True) for a
    value only the editor keeps. A DynamicCombo's nested widgets follow it as ``combo.inner``, for the option
    chosen in ``values`` (else its first). Upload buttons and the audio player come after every input's widget,
    as the frontend adds them. "May be missing": optional, nested or editor-only slots, which a saved list may
    stop before."""
    slots: list = []
    uploads: list = []

    def add(inputs: list, prefix: str, nested: bool):
        for name, entry, optional in inputs:
            if not is_widget(entry):
                continue
            slots.append((prefix + name, entry, optional or nested))
            extra = [(None, None, True)] * _editor_only_values(name, entry)
            (uploads if any(options(entry).get(k) for k in _UPLOADS) else slots).extend(extra)
            if entry_type(entry) == DYNAMIC:
                chosen = values[len(slots) - 1] if values is not None and len(slots) <= len(values) else None
                choices = dynamic_options(entry)
                inner = choices.get(chosen, next(iter(choices.values()), {}))
                add([(n, list(e), section == "optional") for section in ("required", "optional")
                     for n, e in inner.get(section, {}).items()], prefix + name + ".", True)

    add(declared_inputs(spec), "", False)
    return slots + uploads


def widget_slots(spec: dict, values: list | None = None) -> list[str | None]:
    """The input name of each position of ``widgets_values`` (None: a value only the editor keeps)."""
    return [name for name, _, _ in widget_slot_entries(spec, values)]


def _links(workflow: dict) -> dict:
    """link id -> (origin id, origin slot, target id, target slot, type); list (0.4) or object (1.0) form."""
    out = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            out[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                               link.get("type"))
        else:
            out[link[0]] = tuple(link[1:6])
    return out


def _types_match(a, b) -> bool:
    """litegraph isValidConnection: equal, a wildcard, or comma-separated alternatives that overlap."""
    if a in ("*", "", 0, None) or b in ("*", "", 0, None):
        return True
    a, b = str(a).upper(), str(b).upper()
    return a == b or bool(set(a.split(",")) & set(b.split(",")))


def _value(v):
    """Arrays mean links in the API format; the frontend boxes list values."""
    return {"__value__": v} if isinstance(v, list) else v


class _Graph:
    def __init__(self, workflow: dict):
        if (workflow.get("definitions") or {}).get("subgraphs") or (workflow.get("extra") or {}).get("groupNodes"):
            raise ConversionError("the workflow uses subgraphs or group nodes: convert them back to plain nodes in "
                                  "the editor (right-click > Unpack Subgraph / Convert to nodes) and save again")
        self.nodes = {n["id"]: n for n in workflow["nodes"]}
        self.links = _links(workflow)

    def resolve_input(self, node: dict, slot: int, want_type, visited: set):
        """(origin node id, origin slot) of what feeds input ``slot``, ("value", v) for a primitive, or None."""
        key = (node["id"], "I", slot)
        if key in visited:
            raise ConversionError(f"node {node['id']}: circular link through input {slot}")
        visited.add(key)
        inputs = node.get("inputs") or []
        if slot >= len(inputs) or inputs[slot].get("link") is None:
            return None
        link = self.links.get(inputs[slot]["link"])
        if link is None:
            raise ConversionError(f"node {node['id']} ({node['type']}): input {inputs[slot]['name']!r} names missing "
                                  f"link {inputs[slot]['link']}")
        origin = self.nodes.get(link[0])
        if origin is None:
            raise ConversionError(f"link {inputs[slot]['link']}: unknown node {link[0]}")
        return self.resolve_output(origin, link[1], want_type if want_type is not None else inputs[slot].get("type"),
                                   visited)

    def resolve_output(self, node: dict, slot: int, want_type, visited: set):
        key = (node["id"], "O", slot)
        if key in visited:
            raise ConversionError(f"node {node['id']}: circular link through output {slot}")
        visited.add(key)
        if node.get("mode", 0) == BYPASS:
            index = self._bypass_slot(node, slot, want_type)
            return None if index < 0 else self.resolve_input(node, index, want_type, visited)
        if node["type"] == "PrimitiveNode":
            values = node.get("widgets_values") or []
            return ("value", values[0]) if values else None
        if node["type"] in VIRTUAL:
            return self.resolve_input(node, slot, want_type, visited) if slot < len(node.get("inputs") or []) else None
        return (node["id"], slot)

    @staticmethod
    def _bypass_slot(node: dict, slot: int, want_type) -> int:
        inputs, outputs = node.get("inputs") or [], node.get("outputs") or []
        out_type = outputs[slot].get("type") if slot < len(outputs) else None
        if want_type in ("*", ""):
            return slot if len(inputs) > slot else 0
        if slot < len(inputs) and _types_match(inputs[slot].get("type"), out_type) and \
                _types_match(inputs[slot].get("type"), want_type):
            return slot
        for i, inp in enumerate(inputs):
            if inp.get("type") == want_type:
                return i
        for i, inp in enumerate(inputs):
            if _types_match(inp.get("type"), out_type) and _types_match(inp.get("type"), want_type):
                return i
        return -1


def _widget_values(node: dict, spec: dict) -> dict:
    values = node.get("widgets_values")
    if values is None:
        return {}
    if isinstance(values, dict):  # some custom nodes store widgets by name
        names = {name for name, entry, _ in declared_inputs(spec) if is_widget(entry)}
        return {k: v for k, v in values.items() if k in names}
    slots = widget_slots(spec, values)
    # Newer frontends stop before trailing editor-only values (e.g. an upload button) and unset optional widgets.
    if len(values) > len(slots):
        raise ConversionError(
            f"node {node['id']} ({node['type']}): {len(values)} widget values saved, the server's definition has "
            f"{len(slots)} ({[s or '<editor only>' for s in slots]}): the node changed since the workflow was saved; "
            f"open and save it again in the editor")
    return {name: v for name, v in zip(slots, values) if name is not None}


def ui_to_api(workflow: dict, specs: dict) -> dict:
    """The API-format prompt of a UI-format ``workflow``: {"<id>": {"inputs", "class_type", "_meta": {"title"}}}."""
    graph = _Graph(workflow)
    prompt = {}
    for node in sorted(workflow["nodes"], key=lambda n: n["id"]):
        if node["type"] in VIRTUAL or node.get("mode", 0) in (MUTED, BYPASS):
            continue
        spec = specs.get(node["type"])
        if spec is None:
            raise ConversionError(f"node {node['id']}: type {node['type']!r} is not known to the server (a custom "
                                  f"node pack that is not installed?)")
        inputs = {name: _value(v) for name, v in _widget_values(node, spec).items()}
        for slot, inp in enumerate(node.get("inputs") or []):
            resolved = graph.resolve_input(node, slot, None, set())
            if resolved is None:
                continue
            if resolved[0] == "value":
                inputs[inp["name"]] = _value(resolved[1])
            else:
                inputs[inp["name"]] = [str(resolved[0]), int(resolved[1])]
        prompt[str(node["id"])] = {"inputs": inputs, "class_type": node["type"],
                                   "_meta": {"title": node.get("title") or spec.get("display_name") or node["type"]}}
    for entry in prompt.values():  # inputs fed by muted (or unknown) nodes are dropped, as the frontend does
        for name, v in list(entry["inputs"].items()):
            if isinstance(v, list) and len(v) == 2 and v[0] not in prompt:
                del entry["inputs"][name]
    return prompt


def is_api_format(workflow: dict) -> bool:
    return "nodes" not in workflow and all(isinstance(v, dict) and "class_type" in v for v in workflow.values())
