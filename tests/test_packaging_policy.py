"""The Registry's packaging policy: the published tree (what git tracks) holds no __pycache__, compiled Python or
symlinks, and pyproject.toml declares the ComfyUI versions the pack supports ([tool.comfy] requires-comfyui, read by
ComfyUI's comfy_config and comfy-cli)."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTED_COMFYUI = ("0.3.64", "0.8.0")  # the versions tests/integration runs against


def _tracked() -> list[tuple[str, str]]:
    """(git mode, path) of every file git tracks (what the Registry and ComfyUI-Manager ship)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-s", "-z"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    entries = [line.split("\t", 1) for line in out.decode().split("\0") if line]
    return [(meta.split()[0], path) for meta, path in entries]


def test_no_pycache_compiled_files_or_symlinks_are_tracked():
    tracked = _tracked()
    assert tracked
    pycache = [p for _, p in tracked if "__pycache__" in p.split("/") or p.endswith((".pyc", ".pyo"))]
    symlinks = [p for mode, p in tracked if mode == "120000"]
    submodules = [p for mode, p in tracked if mode == "160000"]
    assert pycache == [] and symlinks == [] and submodules == [], (pycache, symlinks, submodules)


def test_gitignore_keeps_bytecode_out():
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "nodes/__pycache__/host.cpython-311.pyc"])
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0, ".gitignore must ignore __pycache__/ and *.pyc"


def test_requires_comfyui_admits_the_tested_versions():
    tomllib = pytest.importorskip("tomllib")
    specifiers = pytest.importorskip("packaging.specifiers")
    comfy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["comfy"]
    spec = specifiers.SpecifierSet(comfy["requires-comfyui"])  # a PEP 440 range, as comfy-cli reads it
    assert all(spec.contains(v) for v in TESTED_COMFYUI), spec
    assert not spec.contains("0.3.63")  # the floor is the oldest version tested
