"""shared_object.follow: following objects by name, through re-creation, removal, many at once,
and stopping within a bounded time. The recorder, the bridge's exporter and the live view all
follow objects through it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from shared_object import SharedDynamicObject, SharedObject
from shared_object.follow import Follower, matching_names

DEADLINE = 30.0


class Log:
    """Every call of every watch, in order: ("open", name, kind), ("value", name, value),
    ("close", name)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def watch(self, obj: SharedObject) -> Any:
        log = self

        class Recording:
            def __init__(self) -> None:
                log.add("open", obj.name, type(obj).__name__)

            def changed(self) -> None:
                value = obj.fetch()
                log.add("value", obj.name, value.tolist() if hasattr(value, "tolist") else value)

            def close(self) -> None:
                log.add("close", obj.name)

        return Recording()

    def add(self, *event: Any) -> None:
        with self.lock:
            self.events.append(event)

    def values(self, name: str) -> list[Any]:
        with self.lock:
            return [e[2] for e in self.events if e[0] == "value" and e[1] == name]

    def count(self, kind: str, name: str) -> int:
        with self.lock:
            return sum(1 for e in self.events if e[0] == kind and e[1] == name)

    def until(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DEADLINE
        while not done():
            assert time.monotonic() < deadline, self.events[-20:]
            time.sleep(0.01)


@pytest.fixture
def follow() -> Iterator[Callable[..., tuple[Follower, Log]]]:
    made: list[Follower] = []

    def start(patterns: list[str], **kwargs: Any) -> tuple[Follower, Log]:
        log = Log()
        follower = Follower(patterns, log.watch, scan_s=0.1, wait_s=0.05, **kwargs)
        follower.start()
        made.append(follower)
        return follower, log

    yield start
    for follower in made:
        follower.stop()


def test_each_change_is_seen_from_the_value_it_finds(shm_name: str, follow: Any) -> None:
    with SharedObject.create(shm_name, 0) as obj:
        _, log = follow([shm_name])
        log.until(lambda: log.values(shm_name) == [0])
        for i in range(1, 6):
            obj.assign(i)
            log.until(lambda i=i: log.values(shm_name)[-1:] == [i])
        assert log.values(shm_name) == [0, 1, 2, 3, 4, 5]
        obj.unlink()


def test_a_re_created_object_is_followed_into_its_new_segment(shm_name: str, follow: Any) -> None:
    """A producer that restarts: its object unlinked and created again under the same name."""
    first = SharedObject.create(shm_name, np.zeros(3))
    _, log = follow([shm_name])
    log.until(lambda: log.count("value", shm_name) == 1)
    first.unlink()
    first.close()
    with SharedObject.create(shm_name, np.full(3, 7.0)) as second:
        log.until(lambda: log.values(shm_name)[-1:] == [[7.0, 7.0, 7.0]])
        second.assign(np.full(3, 8.0))
        log.until(lambda: log.values(shm_name)[-1:] == [[8.0, 8.0, 8.0]])
        assert log.count("close", shm_name) == 1 and log.count("open", shm_name) == 2
        second.unlink()


def test_a_re_created_object_of_another_kind_is_followed_as_that_kind(
    shm_name: str, follow: Any
) -> None:
    first = SharedObject.create(shm_name, 1)
    _, log = follow([shm_name])
    log.until(lambda: log.count("value", shm_name) == 1)
    first.unlink()
    first.close()
    with SharedDynamicObject.create(shm_name, "text now") as second:
        log.until(lambda: log.values(shm_name)[-1:] == ["text now"])
        second.assign([1, 2])
        log.until(lambda: log.values(shm_name)[-1:] == [[1, 2]])
        with log.lock:
            kinds = [e[2] for e in log.events if e[0] == "open"]
        assert kinds == ["SharedObject", "SharedDynamicObject"]
        second.unlink()


def test_a_removed_object_is_let_go_and_followed_again_if_it_comes_back(
    shm_name: str, follow: Any
) -> None:
    obj = SharedObject.create(shm_name, 1)
    follower, log = follow([shm_name])
    log.until(lambda: log.count("value", shm_name) == 1)
    obj.unlink()
    obj.close()
    log.until(lambda: log.count("close", shm_name) == 1)
    log.until(lambda: shm_name not in follower.following)
    with SharedObject.create(shm_name, 2) as back:
        log.until(lambda: log.values(shm_name)[-1:] == [2])
        back.unlink()


def test_many_objects_appearing_at_once_are_all_followed(shm_name: str, follow: Any) -> None:
    names = [f"{shm_name}-{i:02d}" for i in range(24)]
    follower, log = follow([f"{shm_name}-*"])
    objects = [SharedObject.create(name, i) for i, name in enumerate(names)]
    try:
        log.until(lambda: all(log.count("value", n) >= 1 for n in names))
        assert sorted(follower.following) == names
        assert matching_names([f"{shm_name}-*"]) == names
        assert [log.values(n)[0] for n in names] == list(range(24))
    finally:
        for obj in objects:
            obj.unlink()
            obj.close()


def test_max_rate_samples_a_faster_producer(shm_name: str, follow: Any) -> None:
    with SharedObject.create(shm_name, 0) as obj:
        _, log = follow([shm_name], max_rate=10.0)
        log.until(lambda: log.count("value", shm_name) == 1)
        started = time.monotonic()
        i = 0
        while time.monotonic() - started < 1.0:  # 1 s of changes, a thousand a second or more
            i += 1
            obj.assign(i)
            time.sleep(0.001)
        log.until(lambda: log.values(shm_name)[-1] == i)  # the newest one arrives
        seen = log.count("value", shm_name)
        assert seen <= 1 + 10 * 1.0 + 3, seen  # 10 a second, however fast it changes
        assert i > 5 * seen
        obj.unlink()


def test_stop_ends_every_thread_and_names_those_that_did_not(shm_name: str) -> None:
    release = threading.Event()

    class Stuck:
        def __init__(self, obj: SharedObject) -> None:
            self.obj = obj

        def changed(self) -> None:
            self.obj.fetch()
            release.wait(DEADLINE)  # a watch that does not return

        def close(self) -> None:
            pass

    with (
        SharedObject.create(shm_name + "-stuck", 0) as stuck,
        SharedObject.create(shm_name + "-ok", 0),
    ):
        follower = Follower([shm_name + "-*"], Stuck, scan_s=0.1, wait_s=0.05)
        follower.start()
        deadline = time.monotonic() + DEADLINE
        while len(follower.following) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()  # the -ok one's first call returns; make -stuck's next one block
        time.sleep(0.2)
        release.clear()
        stuck.assign(1)
        time.sleep(0.2)
        started = time.monotonic()
        left_behind = follower.stop(timeout=0.5)
        assert time.monotonic() - started < 5  # bounded: it did not wait for the stuck watch
        assert left_behind == [shm_name + "-stuck"]
        release.set()


def test_errors_are_reported_with_the_name_and_following_goes_on(shm_name: str) -> None:
    errors: list[tuple[str, str]] = []

    class Failing:
        def __init__(self, obj: SharedObject) -> None:
            if obj.name.endswith("-bad"):
                raise OSError("this one cannot be read")

        def changed(self) -> None:
            pass

        def close(self) -> None:
            pass

    with SharedObject.create(shm_name + "-bad", 0), SharedObject.create(shm_name + "-good", 0):
        follower = Follower(
            [shm_name + "-*"], Failing, scan_s=0.1, wait_s=0.05,
            on_error=lambda name, exc: errors.append((name, str(exc))),
        )  # fmt: skip
        with follower:
            deadline = time.monotonic() + DEADLINE
            while not errors and time.monotonic() < deadline:
                time.sleep(0.01)
            assert (shm_name + "-bad", "this one cannot be read") in errors
            assert shm_name + "-good" in follower.following
