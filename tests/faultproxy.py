"""A loopback HTTP proxy in front of the S3 emulator that injects storage faults.

moto injects none (docs/FACTS.md, "Object storage"), so tests put this between a client
and moto: it answers a share of requests with 503 SlowDown, resets a share of
connections, or holds matching requests forever (a stall). Messages it forwards go
through byte for byte, chunked uploads included; HEAD replies stay bodiless. It runs
in this process's threads and ends them on `close()`.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import struct
import threading
from dataclasses import dataclass, field

_SLOW_DOWN = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclass
class Faults:
    """What to inject. Shares are per request; `stall` holds requests whose method and
    path match (e.g. r"GET /bucket/corpus/a"), `down` refuses every connection."""

    error_share: float = 0.0
    reset_share: float = 0.0
    stall: str | None = None
    down: bool = False
    seed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    # Every request line seen ("GET /bucket/key?query"), in order: what was asked how often.
    requests: list[str] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream: str, faults: Faults | None = None):
        host, port = upstream.removeprefix("http://").rstrip("/").split(":")
        self._upstream = (host, int(port))
        self.faults = faults or Faults()
        self._random = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            for s in list(self._sockets):
                with contextlib.suppress(OSError):
                    s.close()
        for t in self._threads:
            t.join(timeout=5)
        self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _count(self, what: str) -> None:
        with self._lock:
            self.faults.counts[what] = self.faults.counts.get(what, 0) + 1

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.faults.down:
                _reset(client)
                continue
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self._sockets.add(client)
                self._threads.append(t)
            t.start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        reader = _Reader(client)
        try:
            while not self._closed.is_set():
                head = reader.head()
                if head is None:
                    return
                method, path = head.split(b" ", 2)[:2]
                fault = self._pick(f"{method.decode()} {path.decode()}")
                if fault == "reset":
                    return _reset(client)
                if b"100-continue" in head.lower():  # answer it here; forward without it
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    head = re.sub(rb"(?im)^expect:.*\r\n", b"", head)
                body = reader.body(head)
                if fault == "stall":
                    self._closed.wait()
                    return
                if fault == "error":
                    payload = b"" if method == b"HEAD" else _SLOW_DOWN
                    client.sendall(
                        b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                        + f"Content-Length: {len(_SLOW_DOWN)}\r\n\r\n".encode()
                        + payload
                    )
                    continue
                if upstream is None:
                    upstream = socket.create_connection(self._upstream)
                    with self._lock:
                        self._sockets.add(upstream)
                    up_reader = _Reader(upstream)
                upstream.sendall(head + body)
                reply = up_reader.head()
                if reply is None:
                    return
                no_body = method == b"HEAD" or reply.split(b" ", 2)[1] in (b"204", b"304")
                client.sendall(reply + (b"" if no_body else up_reader.body(reply)))
        except OSError:
            return
        finally:
            for s in (client, upstream):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()

    def _pick(self, request: str) -> str | None:
        f = self.faults
        with self._lock:
            f.requests.append(request)
        if f.stall and re.match(f.stall, request):
            self._count("stall")
            return "stall"
        with self._lock:
            x = self._random.random()
        if x < f.error_share:
            self._count("error")
            return "error"
        if x < f.error_share + f.reset_share:
            self._count("reset")
            return "reset"
        self._count("forwarded")
        return None


def _reset(s: socket.socket) -> None:
    """Close with an RST, as a dropped connection looks to the client."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


class _Reader:
    """Buffered reads of HTTP/1.1 messages off one socket, returning raw bytes."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buf = b""

    def _fill(self) -> bool:
        chunk = self._sock.recv(65536)
        self._buf += chunk
        return bool(chunk)

    def head(self) -> bytes | None:
        while b"\r\n\r\n" not in self._buf:
            if not self._fill():
                return None
        end = self._buf.index(b"\r\n\r\n") + 4
        head, self._buf = self._buf[:end], self._buf[end:]
        return head

    def _exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not self._fill():
                raise OSError("connection closed mid-message")
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            if not self._fill():
                raise OSError("connection closed mid-chunk")
        end = self._buf.index(b"\r\n") + 2
        out, self._buf = self._buf[:end], self._buf[end:]
        return out

    def body(self, head: bytes) -> bytes:
        """The raw body after `head`: by Content-Length, or chunks copied as they came."""
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            raw = b""
            while True:
                size_line = self._line()
                raw += size_line
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers, then the empty line
                        line = self._line()
                        raw += line
                        if line == b"\r\n":
                            return raw
                raw += self._exactly(size + 2)
        match = re.search(rb"content-length:\s*(\d+)", lower)
        return self._exactly(int(match.group(1))) if match else b""
