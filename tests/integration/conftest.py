"""Docker integration fixtures: a client, the image built once, and containers that are always removed.

Every container a test creates carries the label ``shared_object.test-session=<id>`` and is
removed after its test (and, as a backstop, by a sweep of that label at the end of the session),
whatever the test did.

Without a reachable Docker engine these tests skip, saying how to enable them; under CI=true
that is a failure instead (and ``pytest_sessionfinish`` in ../conftest.py fails a CI session in which any test skipped).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # for dockertools, imported by the test modules

from dockertools import LABEL, ROOT, SESSION_ID, Containers, base_image  # noqa: E402

IMAGE_TAG = "shared-object:test"
ENABLE_HINT = "run `bash docker/prepare.sh` (as root on Debian it installs and starts Docker), or start Docker"

pytestmark = pytest.mark.docker


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"Docker integration tests must run under CI, but {reason}", pytrace=False)
    pytest.skip(f"{reason}; to enable the Docker integration tests, {ENABLE_HINT}")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    try:
        import docker.errors

        import docker  # docker-py; guarded: the repository's docker/ folder is not a package
    except ImportError:
        _unavailable("docker-py is not installed (pip install docker)")
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as exc:
        _unavailable(f"no Docker engine is reachable ({exc.__class__.__name__}: {exc})")
    try:
        yield client
    finally:
        for container in client.containers.list(
            all=True, filters={"label": f"{LABEL}={SESSION_ID}"}
        ):
            try:
                container.remove(force=True, v=True)
            except docker.errors.APIError:
                pass
        try:  # networks the bridge tests made: removable once the containers are gone
            client.networks.prune(filters={"label": f"{LABEL}={SESSION_ID}"})
        except docker.errors.APIError:
            pass
        client.close()


@pytest.fixture(scope="session")
def image(docker_client: Any) -> str:
    """The project image, built once per session with docker-py (classic builder)."""
    try:
        docker_client.images.build(
            path=str(ROOT),
            dockerfile="docker/Dockerfile",
            tag=IMAGE_TAG,
            rm=True,
            buildargs={"BASE_IMAGE": base_image()},
        )
    except Exception as exc:  # BuildError carries the log; show its tail
        log = "".join(
            chunk.get("stream", "")
            for chunk in getattr(exc, "build_log", [])
            if isinstance(chunk, dict)
        )
        pytest.fail(f"building the image failed: {exc}\n{log[-3000:]}", pytrace=False)
    return IMAGE_TAG


@pytest.fixture
def containers(docker_client: Any, image: str) -> Iterator[Containers]:
    box = Containers(docker_client, image)
    try:
        yield box
    finally:
        box.cleanup()
