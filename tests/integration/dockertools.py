"""Helpers for the Docker integration tests: start labelled containers, read their output.

No pytest import: benchmarks/bench_containers.py uses ``base_image`` from here.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

SESSION_ID = uuid.uuid4().hex[:12]
LABEL = "shared_object.test-session"
ROOT = Path(__file__).resolve().parents[2]


def base_image() -> str:
    """BASE_IMAGE from the environment, else from .env (written by docker/prepare.sh)."""
    if os.environ.get("BASE_IMAGE"):
        return os.environ["BASE_IMAGE"]
    env = ROOT / ".env"
    if env.exists():
        for line in env.read_text().splitlines():
            if line.startswith("BASE_IMAGE="):
                return line.split("=", 1)[1].strip()
    return "python:3.11-slim"


class Containers:
    """Starts containers for one test and removes them all afterwards."""

    def __init__(self, client: Any, image: str) -> None:
        self.client = client
        self.image = image
        self.started: list[Any] = []

    def run(
        self, script: str | None = None, *, command: list[str] | None = None, **kwargs: Any
    ) -> Any:
        """Start ``python3 -c script`` (or ``command``) in a new, detached container; kwargs go to docker-py."""
        environment = {"PYTHONPATH": "/opt/shared_object/tests", **kwargs.pop("environment", {})}
        container = self.client.containers.run(
            kwargs.pop("image", self.image),
            command or ["python3", "-c", script or ""],
            detach=True,
            labels={LABEL: SESSION_ID},
            environment=environment,
            healthcheck={"test": ["NONE"]},
            **kwargs,
        )
        self.started.append(container)  # registered on the line after it exists
        return container

    def cleanup(self) -> None:
        import docker.errors

        for container in self.started:
            try:
                container.remove(force=True, v=True)
            except docker.errors.APIError:
                pass


def wait_for_output(container: Any, text: str, timeout: float = 60, count: int = 1) -> str:
    """Poll the container's output until ``text`` appears (``count`` times: a restarted container's
    output includes its earlier runs'); fail with the output if it never does."""
    deadline = time.monotonic() + timeout
    logs = ""
    while time.monotonic() < deadline:
        logs = container.logs().decode(errors="replace")
        if logs.count(text) >= count:
            return logs
        container.reload()
        if container.status in ("exited", "dead"):
            break
        time.sleep(0.05)
    msg = f"container never printed {text!r}; status {container.status}; output:\n{logs}"
    raise AssertionError(msg)


def finish(container: Any, timeout: float = 120) -> tuple[int, str]:
    """Wait for the container to exit: (exit code, output)."""
    result = container.wait(timeout=timeout)
    return int(result["StatusCode"]), container.logs().decode(errors="replace")


Runner = Callable[..., Any]
