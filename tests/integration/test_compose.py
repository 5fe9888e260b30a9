"""The demo as users run it: ``docker compose up`` under a unique project name, on one host
(compose.yaml) and across two (compose.multihost.yaml: two IPC namespaces and two bridges)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pytest
from dockertools import LABEL, ROOT, SESSION_ID, base_image

sys.path.insert(0, str(ROOT / "tests"))  # browser.py, for the view profile's test

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


def require_compose() -> None:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                "docker compose (v2) is missing; docker/prepare.sh installs it", pytrace=False
            )
        pytest.skip("docker compose (v2) is missing; run `bash docker/prepare.sh` to install it")


def labels_override(services: tuple[str, ...]) -> str:
    """A compose file that puts our session label on every container, so the session sweep
    removes them whatever happens; its path."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(
            "services:\n"
            + "".join(
                f'  {service}:\n    labels:\n      {LABEL}: "{SESSION_ID}"\n'
                for service in services
            )
        )
    return f.name


@pytest.mark.parametrize(
    ("file", "services", "duration"), [SINGLE_HOST, TWO_HOSTS], ids=["one-host", "two-hosts"]
)
def test_compose_demo_sensor_and_policy(
    docker_client: Any, file: str, services: tuple[str, ...], duration: int
) -> None:
    require_compose()
    project = f"so-test-{SESSION_ID}-{file.removesuffix('.yaml').replace('.', '-')}"
    override = labels_override(services)
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
            # ... as JPEG (compose.multihost.yaml's default), a tenth of its raw size or less
            sizes = re.findall(
                r"demo-frame: out [\d.]+/s, ([\d.]+) kB \(jpeg:90, [\d.]+ MB raw\)", out
            )
            assert sizes and max(map(float, sizes)) < 122, out[-4000:]
    finally:
        compose(project, file, override, "down", "-v", "--remove-orphans")
        os.unlink(override)


def changed_grey_fraction(before: np.ndarray[Any, Any], after: np.ndarray[Any, Any]) -> float:
    """The fraction of the screen grey (r = g = b) in both shots and of another grey in the
    second: the demo's frame is one grey, seq % 256, that the sensor changes 30 times a second;
    the page around it stays as it was."""
    grey_before = (before[..., 0] == before[..., 1]) & (before[..., 1] == before[..., 2])
    grey_after = (after[..., 0] == after[..., 1]) & (after[..., 1] == after[..., 2])
    return float((grey_before & grey_after & (before[..., 0] != after[..., 0])).mean())


def test_compose_view_profile_shows_the_sensors_frame_live(docker_client: Any) -> None:
    require_compose()
    from browser import chromium

    project = f"so-test-{SESSION_ID}-view"
    override = labels_override(("shm", "sensor", "policy", "view"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return compose(project, "compose.yaml", override, "--profile", "view", *args, duration=0)

    try:
        up = run("up", "-d", "--build")
        assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
        deadline = time.monotonic() + 180
        url = None
        while url is None and time.monotonic() < deadline:
            logs = run("logs", "view").stdout
            found = re.search(r"view: open (\S+)", logs)
            url = found.group(1) if found else None
            time.sleep(1)
        assert url == "http://localhost:9090/?url=rerun%2Bhttp%3A%2F%2Flocalhost%3A9091%2Fproxy", (
            logs
        )
        with chromium() as browser:
            page = browser.open(url)
            fraction = 0.0
            while fraction < 0.04 and time.monotonic() < deadline:  # the frame's area
                before = page.screenshot()
                time.sleep(2)
                fraction = changed_grey_fraction(before, page.screenshot())
            assert fraction >= 0.04, (
                f"no live grey frame on the page ({fraction:.3f} of it changed)"
            )
    finally:
        run("down", "-v", "--remove-orphans")
        os.unlink(override)
