"""Start a real ComfyUI server with this pack in its custom_nodes, drive it over HTTP, always stop it.

ComfyUI is found through COMFYUI_PATH, or as the ComfyUI this pack sits in (custom_nodes/), or at
$HOME/ComfyUI. Its python: COMFYUI_PYTHON, else <ComfyUI>/.venv or venv, else this interpreter.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENABLE_HINT = ("ComfyUI not found: set COMFYUI_PATH=/path/to/ComfyUI (0.3.64+, with our requirements installed "
               "in its python, or COMFYUI_PYTHON=...) to run the integration tests")
PACK_FOLDER = "infinitetalk-lipsync"  # a dash on purpose: ComfyUI must import us by path, as the Manager installs us


class ComfyUINotFound(RuntimeError):
    pass


def _is_comfyui(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "comfy").is_dir()


def find_comfyui() -> Path:
    """The ComfyUI checkout to test against; raises ComfyUINotFound (COMFYUI_PATH set but wrong: ValueError)."""
    env = os.environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).expanduser()
        if not _is_comfyui(path):
            raise ValueError(f"COMFYUI_PATH={env} is not a ComfyUI checkout (no main.py / comfy/ there).")
        return path
    here = Path(os.path.abspath(__file__)).parents[2]  # unresolved: the pack may be a symlink in custom_nodes/
    for candidate in (here.parent.parent if here.parent.name == "custom_nodes" else None, Path.home() / "ComfyUI"):
        if candidate is not None and _is_comfyui(candidate):
            return candidate
    raise ComfyUINotFound(ENABLE_HINT)


def comfyui_python(comfyui: Path) -> str:
    env = os.environ.get("COMFYUI_PYTHON")
    if env:
        return env
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
    """A ComfyUI server on 127.0.0.1 with a temporary base directory (models/, input/, output/)."""

    def __init__(self, comfyui: Path, base: Path, python: str | None = None):
        self.comfyui, self.base = comfyui, base
        self.python = python or comfyui_python(comfyui)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.models_dir, self.input_dir, self.output_dir = base / "models", base / "input", base / "output"
        self.log_path = base / "server.log"
        self._process = None

    def start(self, timeout: float = 240.0) -> "ComfyServer":
        for folder in (self.models_dir, self.input_dir, self.output_dir, self.base / "custom_nodes"):
            folder.mkdir(parents=True, exist_ok=True)
        (self.base / "custom_nodes" / PACK_FOLDER).symlink_to(ROOT, target_is_directory=True)
        command = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:"]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(command, cwd=self.comfyui, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
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

    def run(self, prompt: dict, timeout: float = 300.0) -> dict:
        """Queue an API-format workflow, wait, return its /history entry; raise with the server's error."""
        try:
            queued = self._request("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"ComfyUI rejected the workflow: {e.read().decode(errors='replace')}") from None
        prompt_id = queued["prompt_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self._request(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") != "success":
                    errors = [m[1] for m in entry["status"].get("messages", []) if m[0] == "execution_error"]
                    detail = "; ".join(f"{e.get('node_type')}: {e.get('exception_type')}: {e.get('exception_message')}"
                                       for e in errors) or json.dumps(entry["status"])
                    raise RuntimeError(f"workflow failed: {detail}")
                return entry
            time.sleep(0.25)
        self._request("/interrupt", {})
        raise TimeoutError(f"workflow {prompt_id} did not finish within {timeout:.0f} s:\n{self.log()[-4000:]}")


if __name__ == "__main__":  # .ci/run: print the python of the ComfyUI found, or nothing
    try:
        print(comfyui_python(find_comfyui()))
    except ComfyUINotFound:
        pass
