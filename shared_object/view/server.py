"""The Rerun server a live view logs to, and the page a browser opens.

It is Rerun's own command (the ``rerun`` binary in the rerun-sdk wheel, ``--serve-web``) in a
child process, rather than ``rerun.serve_grpc`` and ``rerun.serve_web_viewer`` in ours, because only
the command can choose the address it binds: those functions listen on every interface, and a
live view of a robot's camera should reach no further than the machine unless asked (``--host``).
The child also keeps the server's memory (its buffer for late viewers, ``--server-memory-limit``)
out of our process, and dies with it, even if we are killed (``PR_SET_PDEATHSIG``). It is the
binary itself, not ``python -m rerun``, which runs it as a grandchild that stopping the wrapper
would leave behind.

Rerun's viewer collects anonymous usage statistics unless told not to. The child runs with a
configuration directory of its own in which ``rerun analytics disable`` has been run: it sends
nothing, and the user's own Rerun configuration is left as it was.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from typing import IO

from .._errors import InvalidArgumentError, MissingExtraError

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: How long the server may take to listen (it unpacks the web viewer first).
START_TIMEOUT_S = 30.0


class RerunServer:
    """``python -m rerun --serve-web`` bound to ``host``: the page on ``web_port``, the data on
    ``grpc_port``. A context manager: the child is stopped and its directory removed on exit."""

    def __init__(self, host: str, web_port: int, grpc_port: int, memory_limit: str) -> None:
        self.host, self.web_port, self.grpc_port = host, web_port, grpc_port
        self.memory_limit = memory_limit
        self._home = tempfile.mkdtemp(prefix="shared-object-view-")
        self._env = {
            **os.environ,
            "XDG_CONFIG_HOME": os.path.join(self._home, "config"),
            "XDG_DATA_HOME": os.path.join(self._home, "data"),
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def local_host(self) -> str:
        """Where this machine reaches the server: the bound address, or loopback for any."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104

    @property
    def data_url(self) -> str:
        return f"rerun+http://{self.local_host}:{self.grpc_port}/proxy"

    def page_url(self, browser_host: str | None = None) -> str:
        """The page to open; it connects to the data port, as ``browser_host`` reaches it."""
        host = browser_host or ("localhost" if self.host in ("0.0.0.0", "::") else self.host)  # noqa: S104
        data = f"rerun+http://{host}:{self.grpc_port}/proxy"
        return f"http://{host}:{self.web_port}/?url={urllib.parse.quote(data, safe='')}"

    def start(self) -> None:
        """Start the server and wait until it listens. Call it before starting threads (a
        RecordingStream has some): the child runs ``_die_with_parent`` between fork and exec."""
        for port in (self.web_port, self.grpc_port):
            _check_free(self.host, port)
        rerun = [_binary()]
        subprocess.run(  # into our private configuration directory: see the docstring
            [*rerun, "analytics", "disable"], env=self._env, capture_output=True, timeout=60,
            check=True,
        )  # fmt: skip
        self._log = open(os.path.join(self._home, "server.log"), "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [*rerun, "--serve-web", "--bind", self.host, "--port", str(self.grpc_port),
             "--web-viewer-port", str(self.web_port),
             "--server-memory-limit", self.memory_limit],
            env=self._env, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - started before any thread of ours
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                msg = f"the Rerun server exited at start:\n{self.server_log()}"
                raise RuntimeError(msg)
            if _listening(self.local_host, self.grpc_port) and _listening(
                self.local_host, self.web_port
            ):
                return
            time.sleep(0.1)
        self.stop()
        msg = f"the Rerun server did not listen within {START_TIMEOUT_S:.0f} s"
        raise RuntimeError(msg)

    def server_log(self) -> str:
        try:
            with open(os.path.join(self._home, "server.log"), "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self._home, ignore_errors=True)

    def __enter__(self) -> RerunServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _binary() -> str:
    """The ``rerun`` executable the rerun-sdk wheel ships (``RERUN_CLI_PATH`` overrides it, as
    for ``python -m rerun``)."""
    if os.environ.get("RERUN_CLI_PATH"):
        return os.environ["RERUN_CLI_PATH"]
    spec = importlib.util.find_spec("rerun_cli")
    if spec is None or spec.origin is None:
        msg = "the live view needs the view extra: pip install 'shared_object[view]'"
        raise MissingExtraError(msg)
    path = os.path.join(os.path.dirname(spec.origin), "rerun")
    if not os.path.exists(path):
        msg = f"the rerun-sdk wheel has no viewer binary at {path}: reinstall rerun-sdk"
        raise MissingExtraError(msg)
    return path


def _die_with_parent() -> None:
    """In the child, before it runs: SIGTERM when its parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _check_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            msg = f"cannot listen on {host}:{port} ({exc.strerror}): pick another --port"
            raise InvalidArgumentError(msg) from exc


__all__ = ["RerunServer"]
