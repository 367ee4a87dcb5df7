"""Headless Chromium driven over the DevTools protocol on a pipe, for the report's browser test
and the README screenshot.

Why a pipe and our own 80 lines: `--remote-debugging-pipe` speaks the DevTools protocol as
NUL-terminated JSON on file descriptors 3 and 4, so there is no port to pick, no websocket
library and no driver binary to match Chromium's version (Selenium, Playwright and pyppeteer
each bring one); `--dump-dom` / `--screenshot` alone cannot see console errors or sizes.

    python -m tests.reports.chromium REPORT.html SHOT.png   # writes a screenshot
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    return next((p for n in ("chromium", "chromium-browser") if (p := shutil.which(n))), None)


def install_chromium() -> str:
    """Chromium's path, installing Debian's package when missing and possible; else the
    reason it cannot be had (a string that does not start with '/')."""
    found = find_chromium()
    if found:
        return found
    if not shutil.which("apt-get"):
        return "chromium is not installed and there is no apt-get to install it"
    if os.geteuid() != 0:
        return "chromium is not installed and installing it needs root (apt-get install chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            return f"apt-get could not install chromium: {done.stderr.strip()[-300:]}"
    return find_chromium() or "apt-get installed chromium but no chromium binary is on PATH"


class Browser:
    """One headless Chromium with one page, driven over the DevTools pipe."""

    def __init__(self, binary: str, width: int = 1100, height: int = 1400) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="audiobatch-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # The child reads commands on fd 3 and writes replies and events on fd 4.
        self._proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            # Placed on 3 and 4 after the fork; close_fds=False keeps them through exec (Python's
            # own descriptors are non-inheritable and close at exec anyway).
            close_fds=False,
            preexec_fn=lambda: _onto_3_and_4(to_child_r, from_child_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, session: bool = False, timeout: float = 60, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self._session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def open(self, path: Path, timeout: float = 60) -> None:
        """Navigate to a local file and wait for its load event."""
        self.call("Page.navigate", session=True, url=path.resolve().as_uri())
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._next(deadline))

    def evaluate(self, expression: str):
        out = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        return out["result"].get("value")

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (CSP violations,
        failed loads) seen so far."""
        errors = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
                )
            elif m == "Runtime.exceptionThrown":
                errors.append(p["exceptionDetails"].get("text", "exception"))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                errors.append(p["entry"].get("text", ""))
        return errors

    def screenshot(self, path: Path, height: int = 1100) -> None:
        import base64

        shot = self.call(
            "Page.captureScreenshot",
            session=True,
            format="png",
            clip={"x": 0, "y": 0, "width": 1100, "height": height, "scale": 0.6},
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=10)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _onto_3_and_4(read_end: int, write_end: int) -> None:
    # Copy both ends first, so that placing one on 3 or 4 cannot close the other.
    r, w = os.dup(read_end), os.dup(write_end)
    os.dup2(r, 3)
    os.dup2(w, 4)


PLOT_SIZES = """JSON.stringify([...document.querySelectorAll('figure.plot svg')].map(s => {
    const r = s.getBoundingClientRect(); return [r.width, r.height]; }))"""


if __name__ == "__main__":
    binary = install_chromium()
    if not binary.startswith("/"):
        sys.exit(binary)
    with Browser(binary) as b:
        b.open(Path(sys.argv[1]))
        b.screenshot(Path(sys.argv[2]))
        print("plots:", b.evaluate(PLOT_SIZES), "console errors:", b.console_errors())
