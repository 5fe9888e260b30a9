"""Fixtures shared by every test: unique segment names that are always cleaned up, and reaped processes."""

from __future__ import annotations

import glob
import multiprocessing
import multiprocessing.context
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared_object import Tuning, _segment, _sync

# Spawned processes unpickle their targets by module name: helpers.py's as `helpers`, a test
# module's own as `tests.test_...` (pytest's importlib mode names them so). Both must be on the
# path, whichever test file runs alone.
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(1, os.path.dirname(os.path.dirname(__file__)))

from helpers import SPAWN  # noqa: E402

from shared_object.testing import unique_name


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--torture",
        action="store_true",
        help="run the long torture versions (200 crash rounds per payload, 30 s of load) instead of the short ones",
    )


@pytest.fixture
def torture(request: pytest.FixtureRequest) -> bool:
    """True under --torture: tests size themselves up."""
    return bool(request.config.getoption("--torture"))


@pytest.fixture
def shm_name() -> Iterator[str]:
    """A fresh segment name, unlinked after the test whatever the test did (with the names a
    test derives from it, like ``name + "-idle"``: the random part keeps them its own)."""
    name = unique_name()
    yield name
    for path in glob.glob(os.path.join(glob.escape(_segment.SHM_DIR), glob.escape(name) + "*")):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


@pytest.fixture
def in_small_shm() -> Iterator[Callable[[str, str], subprocess.CompletedProcess[str]]]:
    """Runs Python code in a child whose SHARED_OBJECT_DIR is a fresh tmpfs of the size asked
    ("4m"): a container's small /dev/shm. Needs root (to mount); skips elsewhere."""
    mounted: list[str] = []

    def run(size: str, code: str) -> subprocess.CompletedProcess[str]:
        if os.geteuid() != 0 or sys.platform != "linux":
            pytest.skip("mounting a small tmpfs needs root on Linux")
        directory = tempfile.mkdtemp(prefix="small-shm-")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", directory],
            capture_output=True,
            text=True,
        )
        if result.returncode:
            os.rmdir(directory)
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(directory)
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "SHARED_OBJECT_DIR": directory},
        )

    yield run
    for directory in mounted:
        subprocess.run(["umount", directory], check=False)
        os.rmdir(directory)


@pytest.fixture(params=["lock-free reads", "locked reads"])
def read_path(request: pytest.FixtureRequest) -> Tuning:
    """Run the test twice: with x86's lock-free reads, and with every read under the writer mutex.

    The second is what handles do on CPUs that may reorder loads (aarch64: ``_sync.LOCK_FREE_READS``
    is false there), which CI has no machine for. The test passes the tuning to the handles it
    opens; spawned processes take it as an argument (helpers.read_tuning).
    """
    if request.param == "locked reads":
        return Tuning(lock_free_reads=False)
    if not _sync.LOCK_FREE_READS and os.environ.get("CI", "").lower() != "true":  # see markers.py
        pytest.skip("lock-free reads exist on x86 only: the locked-reads run covers this CPU")
    return Tuning()


@pytest.fixture
def spawn() -> Iterator[Callable[..., multiprocessing.context.SpawnProcess]]:
    """Start a spawned process running ``target(*args)``; every one is reaped after the test."""
    started: list[multiprocessing.context.SpawnProcess] = []

    def start(target: Callable[..., Any], *args: Any) -> multiprocessing.context.SpawnProcess:
        process = SPAWN.Process(target=target, args=args, daemon=True)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.is_alive():
            process.terminate()
            process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)
        process.close()


# ---------------------------------------------------------------------------------------------
# Under CI=true nothing may skip: Docker, the reference, every capability a test needs is there
# (tests/run.sh installs it), so a skip there is a failure of the set-up, not of the machine.
# ---------------------------------------------------------------------------------------------
_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI", "").lower() == "true" and _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"CI=true: {len(_skipped)} test(s) were skipped; under CI every test must run "
                "(first: " + _skipped[0] + ")",
                red=True,
            )
