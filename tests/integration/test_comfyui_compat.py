"""Every ComfyUI symbol the pack uses (tests/comfy_symbols.py reads them from our source) exists in the ComfyUI under
test and takes the call we make, checked in that ComfyUI's own python: a release that drops or changes one fails
here, naming the symbol and our line, instead of failing a user."""
import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

import comfy_symbols

CHECKER = Path(__file__).with_name("comfy_compat_check.py")


def _check(comfyui, uses) -> list[dict]:
    payload = json.dumps([dataclasses.asdict(u) for u in uses])
    done = subprocess.run([comfyui.python, str(CHECKER)], input=payload, capture_output=True, text=True,
                          cwd=comfyui.path, timeout=300)
    assert done.returncode == 0, f"checker failed in ComfyUI {comfyui.version}:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_comfyui_symbol_we_use_exists_with_a_compatible_signature(comfyui):
    uses = comfy_symbols.used_symbols()
    problems = _check(comfyui, uses)
    report = "\n".join(f"  {p['symbol']} (used at {p['where']}): {p['problem']}" for p in problems)
    assert not problems, f"ComfyUI {comfyui.version} ({comfyui.path}) lacks what the pack uses:\n{report}"
    print(f"\nComfyUI {comfyui.version}: {len({u.symbol for u in uses})} symbols checked")


def test_checker_names_a_missing_symbol_and_a_changed_signature(comfyui):
    """The check itself: a symbol that does not exist and a call with a keyword the function lacks are reported."""
    fake = [comfy_symbols.Use("comfy.model_management:no_such_function", "nodes/host.py:1", (0, ())),
            comfy_symbols.Use("comfy.model_management:soft_empty_cache", "nodes/host.py:2", (0, ("no_such_arg",))),
            comfy_symbols.Use("no_such_module:x", "nodes/host.py:3")]
    problems = {p["symbol"]: p["problem"] for p in _check(comfyui, fake)}
    assert "missing" in problems["comfy.model_management:no_such_function"]
    assert "no_such_arg" in problems["comfy.model_management:soft_empty_cache"]
    assert "import no_such_module failed" in problems["no_such_module:x"]
