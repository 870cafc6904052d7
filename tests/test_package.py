"""Packaging and layout rules: installable by ComfyUI-Manager, importable without ComfyUI, every node well-formed."""
import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import infinitetalk_lipsync as pack
from infinitetalk_lipsync.nodes import host

ROOT = Path(__file__).resolve().parents[1]
HOST_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "server", "nodes",
                "latent_preview", "node_helpers", "execution"}
# ComfyUI-Manager refuses to install these (they come with ComfyUI, matched to its CUDA).
MANAGER_BLACKLIST = {"torch", "torchvision", "torchaudio", "torchsde"}


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirement_names(lines):
    return [re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
            for line in lines if line.strip() and not line.strip().startswith("#")]


def _imports(path: Path):
    """(line, absolute module name, level) of every import in a file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", node.level


def _pack_files(folder: str):
    return sorted((ROOT / folder).rglob("*.py"))


def test_requirements_exclude_torch_and_mirror_pyproject():
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    names = _requirement_names(requirements)
    assert not MANAGER_BLACKLIST & set(names), "requirements.txt must not list torch*: ComfyUI provides it"
    project = _pyproject()["project"]
    wanted = sorted(line.strip() for line in requirements if line.strip() and not line.startswith("#"))
    assert sorted(project["dependencies"]) == wanted, "pyproject [project].dependencies must mirror requirements.txt"


def test_pyproject_registry_fields():
    config = _pyproject()
    project, comfy = config["project"], config["tool"]["comfy"]
    assert project["name"] == "infinitetalk-lipsync" and "comfyui" not in project["name"].lower()
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert project["description"] and project["requires-python"]
    assert (ROOT / project["license"]["file"]).is_file()
    assert project["urls"]["Repository"].startswith("https://github.com/")
    assert comfy["PublisherId"] and comfy["DisplayName"] == "InfiniteTalk Lip Sync"
    assert all((ROOT / folder).is_dir() for folder in comfy["includes"])


@pytest.mark.parametrize("path", _pack_files("pipeline"), ids=lambda p: str(p.relative_to(ROOT)))
def test_pipeline_is_plain_pytorch(path):
    for line, module, level in _imports(path):
        root = module.split(".")[0]
        where = f"{path.relative_to(ROOT)}:{line}"
        assert level > 0 or root not in HOST_MODULES, f"{where} imports the host ({module}): pipeline/ is plain PyTorch"
        assert level > 0 or root not in {"pipeline", "infinitetalk_lipsync"}, f"{where}: use a relative import"


# The host-side modules: the only ones that import ComfyUI (each falls back to plain torch without it).
HOST_SIDE = {"host.py", "managed_model.py"}


@pytest.mark.parametrize("path", [p for p in _pack_files("nodes") if p.name not in HOST_SIDE] + [ROOT / "__init__.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_nodes_reach_comfyui_only_through_host(path):
    for line, module, level in _imports(path):
        root = module.split(".")[0]
        assert level > 0 or root not in HOST_MODULES | {"pipeline", "infinitetalk_lipsync"}, (
            f"{path.relative_to(ROOT)}:{line} imports {module}: reach ComfyUI through nodes/host.py "
            f"(or managed_model.py for the memory manager) and the pack through relative imports")


def test_pack_imports_without_comfyui_under_any_folder_name(tmp_path):
    """ComfyUI imports custom_nodes/<folder> by path, folder names with dashes included."""
    link = tmp_path / "infinitetalk-lipsync-main"
    link.symlink_to(ROOT, target_is_directory=True)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('infinitetalk-lipsync-main', r'{link / '__init__.py'}',"
        f" submodule_search_locations=[r'{link}'])\n"
        "module = importlib.util.module_from_spec(spec); sys.modules[spec.name] = module\n"
        "spec.loader.exec_module(module)\n"
        "assert module.NODE_CLASS_MAPPINGS and module.WEB_DIRECTORY\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('comfy', 'folder_paths', 'server')]\n"
        "print(len(module.NODE_CLASS_MAPPINGS))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) == len(pack.NODE_CLASS_MAPPINGS)


def test_web_directory_has_extensions():
    web = ROOT / pack.WEB_DIRECTORY
    assert web.is_dir() and list(web.glob("*.js"))


def _inputs(cls):
    spec = cls.INPUT_TYPES()
    assert isinstance(spec, dict) and set(spec) <= {"required", "optional", "hidden"}, cls.__name__
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            yield section, name, entry


@pytest.mark.parametrize("name", sorted(pack.NODE_CLASS_MAPPINGS))
def test_node_is_well_formed(name):
    cls = pack.NODE_CLASS_MAPPINGS[name]
    assert name.startswith("InfiniteTalk"), "class names are prefixed InfiniteTalk (no clash with other packs)"
    display = pack.NODE_DISPLAY_NAME_MAPPINGS.get(name, "")
    assert display.startswith("InfiniteTalk "), f"{name}: display name 'InfiniteTalk ...' missing"
    assert re.fullmatch(r"InfiniteTalk/(loaders|audio|sampling|mask|utils)(/\w+)*", cls.CATEGORY), cls.CATEGORY
    assert isinstance(cls.RETURN_TYPES, tuple) and all(isinstance(t, str) and t for t in cls.RETURN_TYPES)
    for optional in ("RETURN_NAMES", "OUTPUT_TOOLTIPS", "OUTPUT_IS_LIST"):
        if hasattr(cls, optional):
            assert len(getattr(cls, optional)) == len(cls.RETURN_TYPES), f"{name}.{optional}"
    function = getattr(cls, cls.FUNCTION, None)
    assert callable(function), f"{name}.FUNCTION = {cls.FUNCTION!r} is not a method"
    params = inspect.signature(function).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for section, input_name, entry in _inputs(cls):
        assert isinstance(entry, tuple) and 1 <= len(entry) <= 2, f"{name}.{input_name}: (TYPE, options)"
        kind = entry[0]
        assert isinstance(kind, (str, list)), f"{name}.{input_name}: type must be a string or a list of choices"
        options = entry[1] if len(entry) == 2 else {}
        assert options.get("tooltip"), f"{name}.{input_name}: every input needs a tooltip"
        assert takes_kwargs or input_name in params, f"{name}.{cls.FUNCTION}() lacks parameter {input_name}"
        if section == "optional" and not takes_kwargs:
            assert params[input_name].default is not inspect.Parameter.empty, f"{name}.{input_name}: default None"
        if isinstance(kind, list) and kind:  # model-file lists are empty outside ComfyUI
            assert options.get("default", kind[0]) in kind, f"{name}.{input_name}: default not among choices"
        elif kind in ("INT", "FLOAT") and "default" in options:
            assert options.get("min", options["default"]) <= options["default"] <= options.get("max", options["default"])


def test_host_falls_back_to_plain_torch(tmp_path):
    assert not host.IN_COMFY
    assert host.torch_device().type in ("cpu", "cuda") and host.offload_device().type == "cpu"
    host.soft_empty_cache()
    host.free_memory(1 << 20, host.torch_device())
    host.throw_if_interrupted()
    bar = host.Progress(3)
    bar.update(2)
    bar.update(5)
    assert bar.value == 3
    assert host.model_files("diffusion_models") == [] and host.executing_node_id() is None
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"x")
    assert host.model_path("diffusion_models", str(model)) == str(model)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        host.model_path("diffusion_models", str(tmp_path / "missing.safetensors"))
    host.show_text(None, "plan")
    host.register_model_folders()
    assert set(host.PACK_FOLDERS) >= {"wav2vec2", "sam2"}


def test_pipeline_ships_no_test_stand_ins():
    """Tiny codec/CLIP stand-ins, random SAM2 builders and unused protocols live in tests/ or bench/."""
    import ast

    names = {"TinyCodec", "TinyClip", "random_sam2", "VideoCodec", "ImageEncoder"}
    found = []
    for path in (ROOT / "pipeline").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{path.relative_to(ROOT)}:{n.name}" for n in ast.walk(tree)
                  if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and (n.name in names or
                  any(getattr(b, "id", getattr(b, "attr", "")) == "Protocol" for b in getattr(n, "bases", [])))]
    assert not found, found


def test_pack_errors_show_a_short_stable_type_name():
    """ComfyUI reports ``type.__module__ + '.' + __qualname__`` (execution.full_type_name); under
    custom_nodes/<folder> that would be '<folder>.pipeline.loading.errors.CheckpointError'."""
    import importlib

    found = []
    for path in (ROOT / "pipeline").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exception")):
                rel = path.relative_to(ROOT).with_suffix("")
                module = importlib.import_module(f"{pack.__name__}." + ".".join(rel.parts))
                found.append(getattr(module, node.name))
    assert len(found) >= 5
    for cls in found:
        assert issubclass(cls, Exception)
        assert f"{cls.__module__}.{cls.__qualname__}" == f"infinitetalk.{cls.__name__}", cls
