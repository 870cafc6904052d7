"""A minimal WebSocket client (RFC 6455) for ComfyUI's /ws: connect, receive text messages as JSON, answer pings.
Binary frames (previews) are skipped. Standard library only."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import ssl
import struct
from urllib.parse import urlsplit

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocketClosed(ConnectionError):
    pass


class WebSocket:
    def __init__(self, url: str, timeout: float = 10.0):
        """``url``: http(s):// or ws(s):// address with path and query (e.g. http://host:8188/ws?clientId=x)."""
        parts = urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        host, port = parts.hostname, parts.port or (443 if secure else 80)
        sock = socket.create_connection((host, port), timeout=timeout)
        if secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self._sock, self._buf, self._message, self._opcode = sock, b"", b"", None
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status = head.split("\r\n", 1)[0]
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        if " 101 " not in status + " " or accept not in head:
            sock.close()
            raise ConnectionError(f"websocket handshake with {host}:{port} failed: {status}")

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            self._fill()
        head, self._buf = self._buf.split(marker, 1)
        return head

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise WebSocketClosed("the server closed the websocket")
        self._buf += chunk

    def _frame(self):
        """(first byte, payload) of a complete frame taken from the buffer, or None (bytes stay buffered)."""
        buf = self._buf
        if len(buf) < 2:
            return None
        n, pos = buf[1] & 0x7F, 2
        if n >= 126:
            width = 2 if n == 126 else 8
            if len(buf) < 2 + width:
                return None
            n, pos = int.from_bytes(buf[2:2 + width], "big"), 2 + width
        mask = None
        if buf[1] & 0x80:
            mask, pos = buf[pos:pos + 4], pos + 4
        if len(buf) < pos + n:
            return None
        payload, self._buf = buf[pos:pos + n], buf[pos + n:]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return buf[0], payload

    def _send(self, opcode: int, payload: bytes = b"") -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                         bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                         bytes([0x80 | 127]) + struct.pack(">Q", n))
        self._sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self, timeout: float | None) -> dict | None:
        """The next JSON text message, or None when ``timeout`` passes first. Raises WebSocketClosed."""
        self._sock.settimeout(timeout)
        try:
            while True:
                frame = self._frame()
                if frame is None:
                    self._fill()
                    continue
                b0, payload = frame
                op = b0 & 0x0F
                if op == 0x8:
                    raise WebSocketClosed("the server closed the websocket")
                if op == 0x9:
                    self._send(0xA, payload)
                    continue
                if op == 0xA:
                    continue
                if op in (0x1, 0x2):
                    self._opcode, self._message = op, payload
                else:  # continuation of a fragmented message
                    self._message += payload
                if b0 & 0x80:
                    message, opcode, self._message, self._opcode = self._message, self._opcode, b"", None
                    if opcode == 0x1:
                        return json.loads(message.decode("utf-8"))
                    # binary: a preview image, skipped
        except socket.timeout:
            return None
        except WebSocketClosed:
            raise
        except OSError as e:
            raise WebSocketClosed(f"websocket error: {e}") from None

    def close(self) -> None:
        try:
            self._send(0x8)
        except OSError:
            pass
        self._sock.close()
