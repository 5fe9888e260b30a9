"""A real browser for the tests that show a page: headless Chromium, driven over the DevTools
protocol (a websocket), its screenshots decoded with Pillow.

``chromium()`` starts one, or skips saying how to get one (a failure under CI=true, where
tests/run.sh installs Debian's ``chromium``). It renders WebGL/WebGPU with SwiftShader, on the
CPU: no display and no GPU needed.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import pytest

from shared_object.testing import free_port

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HOW = (
    "install Debian's chromium (apt-get install chromium; tests/run.sh does it as root) and "
    "pip install -e '.[integration]' (websockets, Pillow)"
)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the browser tests must run under CI, but {reason}", pytrace=False)
    pytest.skip(f"{reason}: to run the browser tests, {HOW}")


class Page:
    """One tab, over the DevTools protocol."""

    def __init__(self, websocket: Any) -> None:
        self._ws = websocket
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # events come in between: skip them
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    msg = f"{method}: {message['error']}"
                    raise RuntimeError(msg)
                return dict(message.get("result", {}))

    def screenshot(self) -> np.ndarray[Any, Any]:
        """The page as it is drawn now: an HxWx3 uint8 array."""
        from PIL import Image

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


class Browser:
    """A running Chromium: ``open(url)`` gives a new tab showing ``url``."""

    def __init__(self, port: int, connections: ExitStack) -> None:
        self.port = port
        self._connections = connections  # each tab's websocket, closed with the browser

    def open(self, url: str) -> Page:
        import websockets.sync.client

        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/json/new?{url}", method="PUT"
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            target = json.load(r)
        websocket = self._connections.enter_context(
            websockets.sync.client.connect(target["webSocketDebuggerUrl"], max_size=64 * 2**20)
        )
        return Page(websocket)


@contextmanager
def chromium(width: int = 1280, height: int = 800) -> Iterator[Browser]:
    binary = next((b for b in CANDIDATES if shutil.which(b)), None)
    if binary is None:
        _unavailable("no Chromium is installed")
    try:
        import PIL  # noqa: F401
        import websockets.sync.client  # noqa: F401
    except ImportError as exc:
        _unavailable(f"{exc.name} is not installed")
    port = free_port()
    profile = tempfile.mkdtemp(prefix="so-chromium-")
    process = subprocess.Popen(
        [binary, "--headless=new", "--no-sandbox", "--no-first-run", "--disable-gpu-sandbox",
         "--use-angle=swiftshader", "--enable-unsafe-swiftshader", f"--user-data-dir={profile}",
         f"--remote-debugging-port={port}", f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{binary} did not open its DevTools port within 60 s")
                time.sleep(0.2)
        with ExitStack() as connections:
            yield Browser(port, connections)
    finally:
        process.kill()
        process.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


def fraction_of_colour(
    image: np.ndarray[Any, Any], rgb: tuple[int, int, int], tolerance: int = 24
) -> float:
    """The fraction of the image's pixels within ``tolerance`` of ``rgb`` in every channel."""
    close = np.abs(image.astype(np.int16) - np.array(rgb, np.int16)) <= tolerance
    return float(close.all(axis=2).mean())
