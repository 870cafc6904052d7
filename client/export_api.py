"""Regenerate the API-format exports of the example workflows: ``python -m client.export_api``.

example_workflows/<Name>.json (UI format, shown in the Templates browser) -> example_workflows/api/<name>.json,
the name in lower case with "_" for spaces and punctuation (what the editor's "Export (API)" writes, plus our role titles: "Source video", "Audio", "Prompt", ...; see
client/roles.py). ComfyUI lists only ``example_workflows/*.json`` as templates, never sub-folders (0.3.64, 0.8.0
and 0.38 alike), so api/ is not offered as UI workflows.

Node definitions: this pack's nodes from its INPUT_TYPES (imported; needs torch), core nodes from
client/data/core_object_info.json, a copy of a ComfyUI 0.8.0 server's /object_info for the core nodes the
examples use. ``--server URL`` takes every definition from a running ComfyUI instead and refreshes that copy
(needed when an example starts using another core node). ``--check`` only reports stale files (exit 1).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import urllib.request
from pathlib import Path

from .roles import role_titles
from .ui_to_api import VIRTUAL, ui_to_api

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "example_workflows"
API_DIR = EXAMPLES / "api"
CORE_SPECS = Path(__file__).resolve().parent / "data" / "core_object_info.json"
PACK = "infinitetalk_lipsync"


def _pack_mappings():
    """The pack's (NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS), imported as ComfyUI would (relative imports)."""
    if PACK not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = module
        spec.loader.exec_module(module)
    module = sys.modules[PACK]
    return module.NODE_CLASS_MAPPINGS, module.NODE_DISPLAY_NAME_MAPPINGS


def pack_specs() -> dict:
    """/object_info-shaped definitions of this pack's nodes (model-file combos are empty outside ComfyUI)."""
    mappings, display = _pack_mappings()
    specs = {}
    for name, cls in mappings.items():
        types = json.loads(json.dumps(cls.INPUT_TYPES(), default=str))
        specs[name] = {"input": {k: v for k, v in types.items() if k in ("required", "optional")},
                       "input_order": {k: list(types[k]) for k in ("required", "optional") if k in types},
                       "output": list(cls.RETURN_TYPES), "display_name": display.get(name, name)}
    return specs


def offline_specs() -> dict:
    return {**json.loads(CORE_SPECS.read_text(encoding="utf-8")), **pack_specs()}


def server_specs(url: str) -> dict:
    with urllib.request.urlopen(url.rstrip("/") + "/object_info", timeout=60) as response:
        return json.loads(response.read())


def examples() -> list[Path]:
    return sorted(EXAMPLES.glob("*.json"))


def api_path(ui_path: Path) -> Path:
    """example_workflows/InfiniteTalk V2V dubbing.json -> example_workflows/api/infinitetalk_v2v_dubbing.json"""
    return API_DIR / (re.sub(r"[^a-z0-9]+", "_", ui_path.stem.lower()).strip("_") + ".json")


def export(workflow: dict, specs: dict) -> dict:
    prompt = ui_to_api(workflow, specs)
    for node_id, title in role_titles(prompt).items():
        prompt[node_id]["_meta"]["title"] = title
    return prompt


def render(prompt: dict) -> str:
    return json.dumps(prompt, indent=2, ensure_ascii=False) + "\n"


def stale(specs: dict) -> list[str]:
    """Example names whose API export is missing or differs from a fresh conversion."""
    out = []
    for path in examples():
        target = api_path(path)
        fresh = render(export(json.loads(path.read_text(encoding="utf-8")), specs))
        if not target.exists() or target.read_text(encoding="utf-8") != fresh:
            out.append(path.stem)
    return out


def _core_used(specs: dict, pack: set) -> dict:
    used = sorted({n["type"] for p in examples() for n in json.loads(p.read_text(encoding="utf-8"))["nodes"]}
                  - VIRTUAL - pack)
    missing = [t for t in used if t not in specs]
    if missing:
        raise SystemExit(f"the server does not know {missing}: install what the examples need")
    return {t: specs[t] for t in used}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.export_api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="take node definitions from this running ComfyUI (and refresh the core copy)")
    parser.add_argument("--check", action="store_true", help="only report stale exports (exit 1 if any)")
    args = parser.parse_args(argv)
    if args.server:
        specs = server_specs(args.server)
        core = _core_used(specs, set(pack_specs()))
        if not args.check:
            CORE_SPECS.parent.mkdir(parents=True, exist_ok=True)
            CORE_SPECS.write_text(json.dumps(core, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    else:
        specs = offline_specs()
    names = stale(specs)
    if args.check:
        print("stale: " + ", ".join(names) if names else "API exports up to date")
        return 1 if names else 0
    API_DIR.mkdir(exist_ok=True)
    for path in examples():
        api_path(path).write_text(render(export(json.loads(path.read_text(encoding="utf-8")), specs)),
                                  encoding="utf-8")
    for old in sorted(set(API_DIR.glob("*.json")) - {api_path(p) for p in examples()}):
        old.unlink()  # its UI workflow was removed or renamed
    print(f"wrote {len(examples())} API workflows to {API_DIR.relative_to(ROOT)} ({', '.join(names) or 'none'} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
