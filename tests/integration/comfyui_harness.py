"""Start a real ComfyUI server with this pack in its custom_nodes, drive it over HTTP, always stop it.

The ComfyUIs to test against (every one is tested, one server each): COMFYUI_PATH, several separated by
os.pathsep; without it the ComfyUI this pack sits in (custom_nodes/), $HOME/ComfyUI and every $HOME/ComfyUI-*
checkout. The python of each: COMFYUI_PYTHON (one for all, or one per COMFYUI_PATH entry), else <ComfyUI>/.venv
or venv, else this interpreter.

A node served from ComfyUI's cache has no entry in /history on 0.8+ (0.3.64 repeated its UI output): a test that
reads a node's report gives that node inputs of its own (e.g. a file name of its own), so it really executes.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENABLE_HINT = ("ComfyUI not found: set COMFYUI_PATH=/path/to/ComfyUI (0.3.64+; several separated by "
               f"{os.pathsep!r}), with our requirements installed in its python (or COMFYUI_PYTHON=...), "
               "to run the integration tests")
STUB_NODES = Path(__file__).resolve().parent / "sampler_stub_nodes"
PACK_FOLDER = "infinitetalk-lipsync"  # a dash on purpose: ComfyUI must import us by path, as the Manager installs us


class ComfyUINotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class ComfyUIInstall:
    """One ComfyUI checkout under test: its folder, the python that runs it and its version (comfyui_version.py)."""
    path: Path
    python: str
    version: str

    @property
    def id(self) -> str:  # the test-id part: test_x[comfyui-0.8.0]
        return f"comfyui-{self.version}"


def _is_comfyui(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy").is_dir()


def comfyui_version(path: Path) -> str:
    """__version__ of comfyui_version.py (0.3.40+), else the [project] version of pyproject.toml, else "unknown"."""
    for name, pattern in (("comfyui_version.py", r'__version__\s*=\s*["\']([^"\']+)'),
                          ("pyproject.toml", r'(?m)^version\s*=\s*"([^"]+)"')):
        file = path / name
        if file.is_file() and (match := re.search(pattern, file.read_text(errors="replace"))):
            return match.group(1)
    return "unknown"


def _candidates() -> list[Path]:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        paths = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
        wrong = [str(p) for p in paths if not _is_comfyui(p)]
        if wrong:
            raise ValueError(f"COMFYUI_PATH: {', '.join(wrong)} is not a ComfyUI checkout (no main.py / comfy/ "
                             f"there); separate several with {os.pathsep!r}.")
        return paths
    here = Path(os.path.abspath(__file__)).parents[2]  # unresolved: the pack may be a symlink in custom_nodes/
    home = Path.home()
    found = [here.parent.parent] if here.parent.name == "custom_nodes" else []
    found += [home / "ComfyUI"] + sorted(home.glob("ComfyUI-*"))
    return [p for p in found if _is_comfyui(p)]


def find_comfyuis() -> list[ComfyUIInstall]:
    """Every ComfyUI to test against, in order, each once; [] when there is none (COMFYUI_PATH wrong: ValueError)."""
    paths, seen = [], set()
    for path in _candidates():
        if path.resolve() not in seen:
            seen.add(path.resolve())
            paths.append(path)
    pythons = [p for p in os.environ.get("COMFYUI_PYTHON", "").split(os.pathsep) if p]
    if len(pythons) > 1 and len(pythons) != len(paths):
        raise ValueError(f"COMFYUI_PYTHON names {len(pythons)} pythons for {len(paths)} ComfyUIs: give one for all "
                         "or one per COMFYUI_PATH entry.")
    installs = []
    for i, path in enumerate(paths):
        python = pythons[i if len(pythons) > 1 else 0] if pythons else comfyui_python(path)
        installs.append(ComfyUIInstall(path, python, comfyui_version(path)))
    ids = [i.id for i in installs]
    return [i if ids.count(i.id) == 1 else ComfyUIInstall(i.path, i.python, f"{i.version}-{i.path.name}")
            for i in installs]


def find_comfyui() -> Path:
    """The first ComfyUI to test against; raises ComfyUINotFound (COMFYUI_PATH set but wrong: ValueError)."""
    installs = find_comfyuis()
    if not installs:
        raise ComfyUINotFound(ENABLE_HINT)
    return installs[0].path


def comfyui_python(comfyui: Path) -> str:
    """The python of a ComfyUI checkout: COMFYUI_PYTHON (a single one), its .venv / venv, else this interpreter."""
    env = [p for p in os.environ.get("COMFYUI_PYTHON", "").split(os.pathsep) if p]
    if len(env) == 1:
        return env[0]
    for venv in (".venv", "venv"):
        for exe in ("bin/python", "Scripts/python.exe"):
            if (comfyui / venv / exe).is_file():
                return str(comfyui / venv / exe)
    return sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A ComfyUI server on 127.0.0.1 with a temporary base directory (models/, input/, output/).

    ``extra_nodes``: {folder name: path} of further custom-node packages to install beside the pack (test stubs);
    ``env``: variables added to the server's environment. ``with ComfyServer(...) as server:`` starts it and always
    stops it."""

    def __init__(self, comfyui: Path, base: Path, python: str | None = None, extra_nodes: dict | None = None,
                 env: dict | None = None):
        self.comfyui, self.base = Path(comfyui), base
        self.extra_nodes = dict(extra_nodes or {})
        self.env = dict(env or {})
        self.python = python or comfyui_python(self.comfyui)
        self.version = comfyui_version(self.comfyui)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.models_dir, self.input_dir, self.output_dir = base / "models", base / "input", base / "output"
        self.log_path = base / "server.log"
        self._process = None

    def start(self, timeout: float = 240.0) -> "ComfyServer":
        for folder in (self.models_dir, self.input_dir, self.output_dir, self.base / "custom_nodes"):
            folder.mkdir(parents=True, exist_ok=True)
        for name, source in {PACK_FOLDER: ROOT, **self.extra_nodes}.items():
            (self.base / "custom_nodes" / name).symlink_to(Path(source), target_is_directory=True)
        command = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:"]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(command, cwd=self.comfyui, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True,
                                             env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self._process.returncode} while starting:\n"
                                   f"{self.log()[-4000:]}")
            try:
                self.object_info()
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"ComfyUI did not answer /object_info within {timeout:.0f} s:\n"
                                       f"{self.log()[-4000:]}") from None
                time.sleep(1.0)

    def __enter__(self) -> "ComfyServer":
        try:
            return self.start()
        except BaseException:
            self.stop()  # a server that did not answer in time is still running
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the server and every process it started (idempotent)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _request(self, path: str, body: dict | None = None, timeout: float = 30.0):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def get(self, path: str):
        return self._request(path)

    def object_info(self) -> dict:
        return self._request("/object_info")

    def queue(self, prompt: dict) -> str:
        """Queue an API-format workflow; its prompt id. Raises with the server's reason when it rejects it."""
        try:
            return self._request("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})["prompt_id"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"ComfyUI rejected the workflow: {e.read().decode(errors='replace')}") from None

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """The /history entry of a queued prompt once it has finished, whether it succeeded, failed or was
        interrupted (``entry["status"]["status_str"]``); TimeoutError with the server's log after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self._request(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            time.sleep(0.2)
        raise TimeoutError(f"workflow {prompt_id} did not finish within {timeout:.0f} s:\n{self.log()[-4000:]}")

    def run(self, prompt: dict, timeout: float = 300.0) -> dict:
        """Queue an API-format workflow, wait, return its /history entry; raise with the server's error (and stop
        the workflow when it does not finish in time)."""
        try:
            entry = self.wait(self.queue(prompt), timeout)
        except TimeoutError:
            self.interrupt()
            raise
        if entry["status"].get("status_str") != "success":
            errors = [m[1] for m in entry["status"].get("messages", []) if m[0] == "execution_error"]
            detail = "; ".join(f"{e.get('node_type')}: {e.get('exception_type')}: {e.get('exception_message')}"
                               for e in errors) or json.dumps(entry["status"])
            raise RuntimeError(f"workflow failed: {detail}")
        return entry

    def interrupt(self) -> None:
        """Stop the running workflow, as the Cancel button does."""
        self._request("/interrupt", {})

    def free(self, **flags) -> None:
        """POST /free (``unload_models=True``, ``free_memory=True``), as the Unload models button does."""
        self._request("/free", flags)


def stub_comfy_server(comfyui: ComfyUIInstall, base: Path, **env) -> ComfyServer:
    """A server (not started) with the test-only stub nodes (sampler_stub_nodes/: tiny VAE, CLIP vision, text and
    audio embeddings, probes) installed beside the pack; they read the golden tiny weights. ``env``: more variables
    for the server."""
    import golden  # tests/: on the path under pytest (tests/conftest.py); this file also runs as a script without it
    return ComfyServer(comfyui.path, base, comfyui.python, extra_nodes={"it_sampler_stubs": STUB_NODES},
                       env={"IT_STUB_GOLDEN_DIR": str(golden.golden_dir()), **env})


if __name__ == "__main__":  # .ci/run: "<python>\t<ComfyUI folder>\t<version>" per ComfyUI found, or nothing
    for install in find_comfyuis():
        print(f"{install.python}\t{install.path}\t{install.version}")
