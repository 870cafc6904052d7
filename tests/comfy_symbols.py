"""Every ComfyUI symbol the pack uses, read from its source (so a new use is covered without editing a list).

A *use* is ``"module:qual.name"`` plus, for calls, the call's shape (number of positional arguments and keyword
names) and where it is. Found by parsing every pack module (tests and benchmarks aside):

- ``import comfy.model_management as _mm`` / ``from comfy.cli_args import args as _args`` / ``from server import
  PromptServer`` (also inside functions) bind names to host modules or objects;
- ``_mm.free_memory(x, device)`` through such a name is a use of ``comfy.model_management:free_memory`` called with
  2 positional arguments; ``PromptServer.instance.send_progress_text(...)`` a use of
  ``server:PromptServer.instance.send_progress_text``.

Objects ComfyUI hands to our nodes (a VAE, a CLIP vision model) are used through plain parameters, invisible to
this scan: ``DUCK_TYPED`` lists what the pack calls on them (nodes/adapters.py). tests/integration/
test_comfyui_compat.py checks all of it against each ComfyUI under test (comfy_compat_check.py, run in its python).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST_ROOTS = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "comfy_config", "folder_paths", "server",
              "nodes", "execution", "latent_preview", "node_helpers", "comfy_aimdo"}
SKIP_DIRS = {"tests", "bench", ".venv", ".git", "__pycache__", "example_workflows", "js"}


@dataclass(frozen=True)
class Use:
    symbol: str  # "module:qual.name" ("module:" for the module itself)
    where: str  # "nodes/host.py:18"
    call: tuple | None = None  # (positional count, keyword names) when called


# What nodes/adapters.py calls on the objects ComfyUI passes in (VAELoader's VAE, CLIPVisionLoader's CLIP_VISION).
DUCK_TYPED = [
    Use("comfy.sd:VAE.encode", "nodes/adapters.py (ComfyVAE.encode)", (1, ())),
    Use("comfy.sd:VAE.decode", "nodes/adapters.py (ComfyVAE.decode)", (1, ())),
    Use("comfy.clip_vision:ClipVisionModel.patcher", "nodes/adapters.py (ComfyClipVision.clip)"),
    Use("comfy.clip_vision:ClipVisionModel.model", "nodes/adapters.py (ComfyClipVision.clip)"),
    Use("comfy.model_patcher:ModelPatcher.load_device", "nodes/adapters.py (ComfyClipVision.clip)"),
    Use("comfy.clip_model:CLIPVisionModelProjection.forward", "nodes/adapters.py (ComfyClipVision.clip)",
        (0, ("pixel_values", "intermediate_output"))),
    # ... and on what host.py gets back from ComfyUI
    Use("comfy.utils:ProgressBar.update_absolute", "nodes/host.py (Progress.update)", (3, ())),
    Use("comfy_execution.utils:ExecutionContext.node_id", "nodes/host.py (executing_node_id)"),
]


def _pack_files(root: Path):
    for path in sorted(root.rglob("*.py")):
        if not SKIP_DIRS.intersection(path.relative_to(root).parts[:-1]):
            yield path


def _chain(node) -> list[str] | None:
    """a.b.c -> ["a", "b", "c"] (None if the base is not a plain name)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id] + parts[::-1]


def _uses_in(path: Path, root: Path) -> list[Use]:
    rel = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    bound: dict[str, tuple[str, list[str]]] = {}  # local name -> (module, attribute path)
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in HOST_ROOTS:
                    uses.append(Use(alias.name + ":", f"{rel}:{node.lineno}"))
                    if alias.asname:
                        bound[alias.asname] = (alias.name, [])
                    else:  # "import comfy.utils" binds "comfy"; attribute chains name the submodule
                        bound[alias.name.split(".")[0]] = (alias.name.split(".")[0], [])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in HOST_ROOTS:
            for alias in node.names:
                uses.append(Use(f"{node.module}:{alias.name}", f"{rel}:{node.lineno}"))
                bound[alias.asname or alias.name] = (node.module, [alias.name])
    calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = _chain(node)
        if not chain or chain[0] not in bound:
            continue
        module, prefix = bound[chain[0]]
        names = prefix + chain[1:]
        if not prefix and module == chain[0]:  # "comfy.utils.X" through a bare "import comfy.utils"
            while names and _is_module_name(f"{module}.{names[0]}", tree):
                module, names = f"{module}.{names[0]}", names[1:]
        call = calls.get(id(node))
        shape = None if call is None else (sum(not isinstance(a, ast.Starred) for a in call.args),
                                           tuple(k.arg for k in call.keywords if k.arg))
        uses.append(Use(f"{module}:{'.'.join(names)}", f"{rel}:{node.lineno}", shape))
    for node in ast.walk(tree):  # a bound name called directly: get_executing_context()
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in bound:
            module, prefix = bound[node.func.id]
            if prefix:
                shape = (len(node.args), tuple(k.arg for k in node.keywords if k.arg))
                uses.append(Use(f"{module}:{'.'.join(prefix)}", f"{rel}:{node.lineno}", shape))
    return _outermost(uses)


def _is_module_name(dotted: str, tree) -> bool:
    return any(isinstance(n, ast.Import) and any(a.name == dotted or a.name.startswith(dotted + ".") for a in n.names)
               for n in ast.walk(tree))


def _outermost(uses: list[Use]) -> list[Use]:
    """Drop the inner parts of a chain (``a.b`` when ``a.b.c`` is used at the same place), keep calls."""
    keep = []
    for u in uses:
        longer = [v for v in uses if v.where == u.where and v is not u and v.symbol.startswith(u.symbol + ".")]
        if not longer or u.call is not None:
            keep.append(u)
    return keep


def used_symbols(root: Path = ROOT) -> list[Use]:
    """Every use of a ComfyUI symbol in the pack's own modules, plus DUCK_TYPED."""
    uses = [u for path in _pack_files(root) for u in _uses_in(path, root)]
    return sorted(set(uses + DUCK_TYPED), key=lambda u: (u.symbol, u.where))
