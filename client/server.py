"""One ComfyUI server over its HTTP API (/object_info, /upload/image, /prompt, /history, /view, /queue,
/interrupt) and its websocket (/ws). Connection failures become ServerDown (the job goes to another server);
the server's own refusals and execution errors become JobFailed with its text."""
from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from .ws import WebSocket, WebSocketClosed

NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError, http.client.HTTPException,
                  OSError)


class ServerDown(ConnectionError):
    pass


class JobFailed(RuntimeError):
    pass


def rejection_text(body: bytes) -> str:
    """The /prompt 400 answer as one readable line: the error and every node's errors."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:500]
    parts = []
    error = data.get("error")
    if isinstance(error, dict):
        parts.append(": ".join(x for x in (error.get("message"), error.get("details")) if x))
    elif error:
        parts.append(str(error))
    for node_id, info in (data.get("node_errors") or {}).items():
        for e in info.get("errors", []):
            detail = e.get("details") or ""
            parts.append(f"node {node_id} ({info.get('class_type')}): {e.get('message')}" + (f": {detail}" if detail else ""))
    return "; ".join(p for p in parts if p) or body.decode(errors="replace")[:500]


def execution_error_text(data: dict) -> str:
    return (f"{data.get('node_type') or 'node ' + str(data.get('node_id'))}: {data.get('exception_type', 'error')}: "
            f"{str(data.get('exception_message', '')).strip()}")


def upload_name(path: Path) -> str:
    """Name on the server: the file's stem + a digest of its content (same file -> same name, no clashes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{path.stem}-{digest.hexdigest()[:10]}{path.suffix.lower()}"


class Server:
    def __init__(self, url: str, timeout: float = 60.0):
        url = url.strip().rstrip("/")
        self.url = url if "://" in url else "http://" + url
        self.name = urllib.parse.urlsplit(self.url).netloc
        self.timeout = timeout

    def __repr__(self):
        return f"Server({self.url})"

    # ---- HTTP
    def _request(self, path: str, body=None, headers=None, timeout=None, raw=False):
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        request = urllib.request.Request(self.url + path, data=data,
                                         headers=headers or ({"Content-Type": "application/json"} if data else {}))
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                content = response.read()
        except urllib.error.HTTPError:
            raise
        except NETWORK_ERRORS as e:
            raise ServerDown(f"{self.name}: {e}") from None
        return content if raw else json.loads(content or b"null")

    def alive(self, attempts: int = 2) -> bool:
        for i in range(attempts):
            try:
                self._request("/queue", timeout=5)
                return True
            except (ServerDown, urllib.error.HTTPError, ValueError):
                if i + 1 < attempts:
                    time.sleep(1.0)
        return False

    def object_info(self) -> dict:
        return self._request("/object_info")

    def upload(self, path: Path) -> str:
        """Upload a local file into the server's input/ (any type: /upload/image stores bytes as given)."""
        name, boundary = upload_name(path), uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\ninput\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body():  # streamed: a long video is never held in memory
            yield head
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    yield block
            yield tail

        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
                   "Content-Length": str(len(head) + Path(path).stat().st_size + len(tail))}
        try:
            answer = self._request("/upload/image", body(), headers, timeout=max(self.timeout, 600))
        except urllib.error.HTTPError as e:
            raise JobFailed(f"upload of {path.name} refused: HTTP {e.code} {e.read()[:300]!r}") from None
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def queue(self, prompt: dict, client_id: str) -> str:
        try:
            return self._request("/prompt", {"prompt": prompt, "client_id": client_id})["prompt_id"]
        except urllib.error.HTTPError as e:
            raise JobFailed(f"the server refused the workflow: {rejection_text(e.read())}") from None

    def history(self, prompt_id: str) -> dict | None:
        return self._request(f"/history/{prompt_id}").get(prompt_id)

    def download(self, ref: dict, dest: Path) -> None:
        query = urllib.parse.urlencode({"filename": ref["filename"], "subfolder": ref.get("subfolder", ""),
                                        "type": ref.get("type", "output")})
        tmp = dest.with_name(dest.name + ".part")
        try:
            with urllib.request.urlopen(f"{self.url}/view?{query}", timeout=max(self.timeout, 600)) as response, \
                    open(tmp, "wb") as f:
                while block := response.read(1 << 20):
                    f.write(block)
        except urllib.error.HTTPError as e:
            raise JobFailed(f"download of {ref['filename']} failed: HTTP {e.code}") from None
        except NETWORK_ERRORS as e:
            tmp.unlink(missing_ok=True)
            raise ServerDown(f"{self.name}: {e}") from None
        tmp.replace(dest)

    def cancel(self, prompt_id: str) -> None:
        """Remove it from the queue, or interrupt it if it runs (best effort)."""
        for path, body in (("/queue", {"delete": [prompt_id]}), ("/interrupt", {"prompt_id": prompt_id})):
            try:
                self._request(path, body, timeout=5, raw=True)
            except (ServerDown, urllib.error.HTTPError):
                pass

    # ---- websocket
    def connect(self, client_id: str) -> WebSocket:
        ws_url = self.url.replace("https://", "wss://").replace("http://", "ws://") + f"/ws?clientId={client_id}"
        try:
            return WebSocket(ws_url, timeout=10)
        except NETWORK_ERRORS as e:
            raise ServerDown(f"{self.name}: websocket: {e}") from None

    def follow(self, ws: WebSocket, client_id: str, prompt_id: str, on_event, should_stop, poll_s: float = 5.0) -> dict:
        """Wait for ``prompt_id`` to finish; ``on_event(type, data)`` sees its websocket messages. Returns its
        /history entry; raises JobFailed (error / interrupted), ServerDown, or stops early when ``should_stop()``."""
        last_poll = time.monotonic()
        while True:
            if should_stop():
                return {}
            try:
                message = ws.recv(timeout=1.0)
            except WebSocketClosed:
                if not self.alive():
                    raise ServerDown(f"{self.name} stopped answering") from None
                ws.close()
                ws = self.connect(client_id)  # same client id: the server keeps sending us its messages
                message = None
            if message is not None:
                kind, data = message.get("type"), message.get("data") or {}
                if data.get("prompt_id") == prompt_id:
                    on_event(kind, data)
                    if kind == "execution_error":
                        raise JobFailed(execution_error_text(data))
                    if kind == "execution_interrupted":
                        raise JobFailed(f"interrupted on the server (at {data.get('node_type')})")
                    if kind == "execution_success" or (kind == "executing" and data.get("node") is None):
                        return self._finished(prompt_id)
                continue
            if time.monotonic() - last_poll >= poll_s:  # a missed message, or a server that died silently
                last_poll = time.monotonic()
                entry = self.history(prompt_id)
                if entry and entry.get("status", {}).get("completed") is not None:
                    return self._finished(prompt_id, entry)

    def _finished(self, prompt_id: str, entry: dict | None = None) -> dict:
        for _ in range(20):  # history is written right after the last message
            entry = entry or self.history(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                break
            entry = None
            time.sleep(0.25)
        if not entry:
            raise JobFailed("finished but the server has no history entry for it")
        status = entry["status"]
        if status.get("status_str") != "success":
            errors = [execution_error_text(m[1]) for m in status.get("messages", []) if m[0] == "execution_error"]
            raise JobFailed("; ".join(errors) or f"failed: {json.dumps(status)[:300]}")
        return entry


def output_files(entry: dict) -> list[dict]:
    """The files a finished prompt saved to the output folder (previews in temp/ left out), node by node."""
    files = []
    for node_output in (entry.get("outputs") or {}).values():
        for value in node_output.values():
            if isinstance(value, list):
                files += [f for f in value if isinstance(f, dict) and "filename" in f and f.get("type") == "output"]
    return files
