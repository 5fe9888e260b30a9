"""The demo as users run it: ``docker compose up`` of compose.yaml, under a unique project name."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from typing import Any

import pytest
from dockertools import LABEL, ROOT, SESSION_ID, base_image

pytestmark = pytest.mark.docker


def compose(
    project: str, override: str, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASE_IMAGE": base_image(), "DEMO_DURATION": "5", "DEMO_RATE": "30"}
    return subprocess.run(
        [
            "docker",
            "compose",
            "-p",
            project,
            "-f",
            str(ROOT / "compose.yaml"),
            "-f",
            override,
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_compose_demo_sensor_and_policy(docker_client: Any) -> None:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                "docker compose (v2) is missing; docker/prepare.sh installs it", pytrace=False
            )
        pytest.skip("docker compose (v2) is missing; run `bash docker/prepare.sh` to install it")
    project = f"so-test-{SESSION_ID}"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        # Our session label on every container, so the session sweep removes them whatever happens.
        f.write(
            "services:\n"
            + "".join(
                f'  {service}:\n    labels:\n      {LABEL}: "{SESSION_ID}"\n'
                for service in ("shm", "sensor", "policy")
            )
        )
        override = f.name
    try:
        up = compose(project, override, "up", "--build", "--abort-on-container-exit")
        out = up.stdout + up.stderr
        assert up.returncode == 0, out[-4000:]
        codes = compose(
            project, override, "ps", "-a", "--format", "{{.Service}}={{.ExitCode}}"
        ).stdout.split()
        assert sorted(codes) == ["policy=0", "sensor=0", "shm=0"], out[-4000:]
        received = int(re.search(r"\[policy\] done: (\d+) frames received", out).group(1))  # type: ignore[union-attr]
        sent, answered = map(
            int, re.search(r"\[sensor\] done: (\d+) frames sent, (\d+) answered", out).groups()
        )  # type: ignore[union-attr]
        assert received > 0 and answered > 0 and sent >= answered
        assert re.search(r"\[policy\] \d+ frames/s, latency p50 \d+ us", out), out[-4000:]
    finally:
        compose(project, override, "down", "-v", "--remove-orphans")
        os.unlink(override)
