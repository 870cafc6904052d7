"""A patched prompt checked against a server's /object_info before anything is queued: node types that are not
installed, model files (any file-name combo) the server does not have, values out of range, missing inputs."""
from __future__ import annotations

import re

from .ui_to_api import declared_inputs, is_widget

_FILE = re.compile(r"(\.[A-Za-z0-9]{2,12}|/)$")


def _choices(entry: list):
    if isinstance(entry[0], list):
        return entry[0]
    opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
    return opts.get("options") if entry[0] == "COMBO" else None


def _check_value(where: str, name: str, entry: list, value) -> str | None:
    kind = "COMBO" if isinstance(entry[0], list) else entry[0]
    opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
    choices = _choices(entry)
    if choices is not None:
        if value in choices:
            return None
        if isinstance(value, str) and _FILE.search(value):
            shown = ", ".join(map(str, choices[:8])) + (" …" if len(choices) > 8 else "") or "none"
            return (f"{where}.{name}: the server has no file {value!r} (it has: {shown}); put the file in the "
                    f"model folder this input reads and restart ComfyUI or press Refresh")
        return f"{where}.{name}: {value!r} is not one of {choices}"
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind == "INT" and not isinstance(value, int)):
            return f"{where}.{name}: {value!r} is not {'an integer' if kind == 'INT' else 'a number'}"
        if "min" in opts and value < opts["min"]:
            return f"{where}.{name}: {value} is below the minimum {opts['min']}"
        if "max" in opts and value > opts["max"]:
            return f"{where}.{name}: {value} is above the maximum {opts['max']}"
    elif kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{where}.{name}: {value!r} is not true/false"
    elif kind == "STRING" and not isinstance(value, str):
        return f"{where}.{name}: {value!r} is not text"
    return None


def problems(prompt: dict, object_info: dict, skip: set = frozenset()) -> list[str]:
    """Everything that would make the server refuse (or fail to load) ``prompt``; ``skip``: (node id, input) pairs
    whose value is a file uploaded just before queueing."""
    out = []
    for node_id, node in prompt.items():
        title = (node.get("_meta") or {}).get("title") or node["class_type"]
        where = f"{title!r} (node {node_id})"
        spec = object_info.get(node["class_type"])
        if spec is None:
            out.append(f"{where}: node type {node['class_type']!r} is not installed on the server")
            continue
        for name, entry, optional in declared_inputs(spec):
            value = node["inputs"].get(name)
            if value is None:
                if not optional:
                    out.append(f"{where}: required input {name!r} is missing")
                continue
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                source = prompt.get(value[0])
                if source is None:
                    out.append(f"{where}.{name}: linked to node {value[0]}, which is not in the workflow")
                elif (spec_out := object_info.get(source["class_type"], {}).get("output")) is not None \
                        and not 0 <= value[1] < len(spec_out):
                    out.append(f"{where}.{name}: node {value[0]} has no output {value[1]}")
                continue
            if is_widget(entry) and (node_id, name) not in skip:
                if isinstance(value, dict) and "__value__" in value:
                    continue
                if err := _check_value(where, name, entry, value):
                    out.append(err)
    return out
