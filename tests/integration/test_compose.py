"""The demo as users run it: ``docker compose up`` under a unique project name, on one host
(compose.yaml) and across two (compose.multihost.yaml: two IPC namespaces and two bridges)."""

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
    project: str, file: str, override: str, *args: str, duration: int = 5, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BASE_IMAGE": base_image(),
        "DEMO_DURATION": str(duration),
        "DEMO_RATE": "30",
    }
    return subprocess.run(
        [
            "docker",
            "compose",
            "-p",
            project,
            "-f",
            str(ROOT / file),
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


SINGLE_HOST = ("compose.yaml", ("shm", "sensor", "policy"), 5)
# Longer: the bridges start once the sensor is healthy, and frames sent before the policy is up
# are not answered.
TWO_HOSTS = (
    "compose.multihost.yaml",
    ("a-shm", "sensor", "a-bridge", "b-shm", "b-bridge", "policy"),
    15,
)


@pytest.mark.parametrize(
    ("file", "services", "duration"), [SINGLE_HOST, TWO_HOSTS], ids=["one-host", "two-hosts"]
)
def test_compose_demo_sensor_and_policy(
    docker_client: Any, file: str, services: tuple[str, ...], duration: int
) -> None:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                "docker compose (v2) is missing; docker/prepare.sh installs it", pytrace=False
            )
        pytest.skip("docker compose (v2) is missing; run `bash docker/prepare.sh` to install it")
    project = f"so-test-{SESSION_ID}-{file.removesuffix('.yaml').replace('.', '-')}"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        # Our session label on every container, so the session sweep removes them whatever happens.
        f.write(
            "services:\n"
            + "".join(
                f'  {service}:\n    labels:\n      {LABEL}: "{SESSION_ID}"\n'
                for service in services
            )
        )
        override = f.name
    try:
        up = compose(
            project, file, override, "up", "--build", "--abort-on-container-exit", duration=duration
        )
        out = up.stdout + up.stderr
        assert up.returncode == 0, out[-4000:]
        codes = compose(
            project, file, override, "ps", "-a", "--format", "{{.Service}}={{.ExitCode}}"
        ).stdout.split()
        assert sorted(codes) == sorted(f"{service}=0" for service in services), out[-4000:]
        received = int(re.search(r"\[policy\] done: (\d+) frames received", out).group(1))  # type: ignore[union-attr]
        sent, answered = map(
            int, re.search(r"\[sensor\] done: (\d+) frames sent, (\d+) answered", out).groups()
        )  # type: ignore[union-attr]
        assert received > 0 and answered > 0 and sent >= answered
        assert re.search(r"\[policy\] \d+ frames/s, latency p50 \d+ us", out), out[-4000:]
        if "b-bridge" in services:  # the policy has no network: every frame came through b-bridge
            assert not re.search(r"malformed [1-9]|errors [1-9]", out), out[-4000:]
    finally:
        compose(project, file, override, "down", "-v", "--remove-orphans")
        os.unlink(override)
