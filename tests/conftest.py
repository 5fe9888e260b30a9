"""Fixtures shared by every test: unique segment names that are always cleaned up, and reaped processes."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared_object import _segment

# tests/helpers.py holds what spawned processes run; they import it by name, so it must be on the path.
sys.path.insert(0, os.path.dirname(__file__))
from shared_object.testing import unique_name

#: Every multi-process test spawns (fresh interpreters, as separate programs would be), never forks.
SPAWN = multiprocessing.get_context("spawn")
#: How long a helper process may take to start and finish its part (spawn imports numpy: ~0.3 s).
PROCESS_DEADLINE = 60.0


@pytest.fixture
def shm_name() -> Iterator[str]:
    """A fresh segment name, unlinked after the test whatever the test did."""
    name = unique_name()
    yield name
    try:
        os.unlink(os.path.join(_segment.SHM_DIR, name))
    except FileNotFoundError:
        pass


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
