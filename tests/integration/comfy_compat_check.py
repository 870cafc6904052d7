"""Run inside a ComfyUI's python (cwd = the ComfyUI folder): resolve each symbol given as JSON on stdin
([{"symbol": "module:qual.name", "where": ..., "call": [n_positional, [keywords]] | null}]) and check that a call of
that shape binds to its signature. Prints one JSON list of problems ({"symbol", "where", "problem"}).

Attribute lookup: a class attribute or method; else an instance attribute assigned in the class's source
(``self.x = ...`` / ``Cls.x = ...``) or declared as a field (dataclass, NamedTuple, annotations); a singleton
(``Cls.instance = self``) is looked into as its class."""
import importlib
import inspect
import json
import re
import sys

sys.argv = [sys.argv[0], "--cpu"]  # comfy.model_management picks the CPU (no accelerator on CI)
sys.path.insert(0, ".")
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import utils  # noqa: E402,F401 - ComfyUI's utils/ package, bound first as main.py does (else comfy/utils.py shadows it)


class _Instance:
    """Stands for an instance attribute found in a class's source (no value to look further into)."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name


def _attribute(obj, name):
    if isinstance(obj, _Instance):
        raise AttributeError(f"cannot look into instance attribute {obj.owner.__name__}.{obj.name}")
    try:
        return getattr(obj, name)
    except AttributeError:
        if not inspect.isclass(obj):
            raise
    fields = set(getattr(obj, "__dataclass_fields__", {})) | set(getattr(obj, "_fields", ())) | set(
        getattr(obj, "__annotations__", {}))
    source = ""
    for klass in inspect.getmro(obj):
        try:
            source += inspect.getsource(klass)
        except (OSError, TypeError):
            pass
    if re.search(rf"\b{obj.__name__}\.{re.escape(name)}\s*=\s*self\b", source):
        return obj  # a singleton ("PromptServer.instance = self"): look further into the class
    if name in fields or re.search(rf"\b(self|{obj.__name__})\.{re.escape(name)}\s*(:[^=\n]+)?=[^=]", source):
        return _Instance(obj, name)
    raise AttributeError(f"{obj.__name__} has no attribute or instance attribute {name!r}")


def check(use):
    module_name, _, qualname = use["symbol"].partition(":")
    try:
        obj = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - report any import failure by name
        return f"import {module_name} failed: {type(e).__name__}: {e}"
    for part in [p for p in qualname.split(".") if p]:
        try:
            obj = _attribute(obj, part)
        except AttributeError as e:
            return f"missing: {e}"
    if use.get("call") is None:
        return None
    if isinstance(obj, _Instance) or not callable(obj):
        return f"used as a callable, but is {type(obj).__name__}"
    positional, keywords = use["call"]
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None  # builtins without a signature: the name check above is all we can do
    params = list(signature.parameters.values())
    if inspect.isclass(obj) or (qualname.count(".") and params and params[0].name == "self"
                                and inspect.isfunction(obj)):
        params = params[1:] if params and params[0].name == "self" else params
        signature = signature.replace(parameters=params)
    try:
        signature.bind(*([None] * positional), **{k: None for k in keywords})
    except TypeError as e:
        return f"signature {signature} does not take {positional} positional + {list(keywords)}: {e}"
    return None


def main():
    problems = []
    for use in json.load(sys.stdin):
        problem = check(use)
        if problem:
            problems.append({"symbol": use["symbol"], "where": use["where"], "problem": problem})
    print(json.dumps(problems))


if __name__ == "__main__":
    main()
