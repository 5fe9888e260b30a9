"""Creating, attaching, closing, unlinking and pickling a SharedObject: the handle's life."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import pytest

from shared_object import (
    ClosedError,
    InvalidArgumentError,
    ReadersLock,
    SegmentExistsError,
    SegmentNotFoundError,
    SharedDynamicObject,
    SharedObject,
)


def test_reference_constructor_creates_attaches_and_assigns(shm_name: str) -> None:
    with SharedObject(shm_name, data=np.ones((4, 3))) as producer:
        with SharedObject(shm_name) as consumer:  # mounts the existing object
            assert consumer.fetch().sum() == 12
        with SharedObject(shm_name, data=np.zeros((4, 3))):  # attaches and assigns
            pass
        assert producer.fetch().sum() == 0


def test_reference_constructor_without_data_makes_a_trigger(shm_name: str) -> None:
    with SharedObject(shm_name) as trigger, SharedObject(shm_name) as listener:
        assert trigger.fetch() is None
        assert not listener.triggered
        trigger.trigger()
        assert listener.triggered
        assert not listener.triggered  # reading it resets it
        trigger.trigger().trigger()  # returns self; two changes before anyone looks
        assert listener.triggered and not listener.triggered


def test_create_and_attach_are_explicit(shm_name: str) -> None:
    with pytest.raises(SegmentNotFoundError):
        SharedObject.attach(shm_name)
    with SharedObject.create(shm_name, "x") as obj:
        with pytest.raises(SegmentExistsError):
            SharedObject.create(shm_name, "y")
        assert SharedObject.attach(shm_name).fetch() == "x"
        obj.unlink()
    with pytest.raises(SegmentNotFoundError):
        SharedObject.attach(shm_name)


def test_repr_names_segment_type_and_size(shm_name: str) -> None:
    with SharedObject.create(shm_name, np.zeros((480, 848, 3), np.uint8)) as obj:
        assert (
            repr(obj)
            == f"SharedObject({shm_name!r}, type=ndarray[uint8, (480, 848, 3)], size=1221120 bytes)"
        )
    assert repr(obj).endswith("closed)")


def test_pickles_as_attach_by_name(shm_name: str) -> None:
    with SharedObject.create(shm_name, [1, 2]) as obj:
        copy = pickle.loads(pickle.dumps(obj))
        assert copy is not obj and copy.name == shm_name
        obj.assign([3, 4])
        assert copy.fetch() == [3, 4]
        copy.close()


@pytest.mark.parametrize("slots", [2, 1])
def test_closed_handle_refuses_everything_clearly(shm_name: str, slots: int) -> None:
    obj = SharedObject.create(shm_name, 1, slots=slots)
    other = SharedObject.attach(shm_name)
    obj.close()
    obj.close()  # idempotent
    assert obj.closed
    for action in (
        obj.fetch,
        lambda: obj.assign(2),
        obj.trigger,
        lambda: obj.wait(0),
        lambda: obj.fetch(lambda x: x),
        lambda: obj.view().__enter__(),
    ):
        with pytest.raises(ClosedError, match="closed"):
            action()
    with pytest.raises(ClosedError):
        _ = obj.modified
    assert other.fetch() == 1  # closing one handle leaves the object alone
    other.close()


def test_context_manager_closes_but_never_unlinks(shm_name: str) -> None:
    with SharedObject.create(shm_name, 1) as obj:
        pass
    assert obj.closed
    with SharedObject.attach(shm_name) as again:
        assert again.fetch() == 1


def test_a_handle_learns_that_its_segment_was_unlinked_or_replaced(shm_name: str) -> None:
    # A restarted producer that re-creates its object would otherwise leave consumers waiting
    # on the old segment forever, with no sign of why.
    producer = SharedObject.create(shm_name, 1)
    consumer = SharedObject.attach(shm_name)
    assert not consumer.orphaned and not producer.orphaned
    producer.unlink()
    assert consumer.orphaned and producer.orphaned
    assert consumer.fetch() == 1  # still a working handle on the old segment
    producer.close()
    with SharedObject.create(shm_name, "restarted") as restarted:
        assert consumer.orphaned  # the name leads to another segment now
        assert not restarted.orphaned
        assert not consumer.wait(0.01)  # nobody writes the old one any more
        consumer.close()
        with pytest.raises(ClosedError):
            _ = consumer.orphaned
        with SharedObject.attach(shm_name) as followed:
            assert followed.fetch() == "restarted" and not followed.orphaned


def test_unlink_by_an_old_handle_leaves_a_restarted_producers_segment_alone(shm_name: str) -> None:
    # The race this prevents: a producer restarts and re-creates its object; a consumer still
    # attached to the old segment shuts down and calls unlink(). Removing the name there would
    # delete the new segment, and every consumer started later would wait for it in vain.
    old = SharedObject.create(shm_name, 1)
    consumer = SharedObject.attach(shm_name)
    old.unlink()
    old.close()
    with SharedObject.create(shm_name, 2) as restarted:
        with pytest.raises(SegmentNotFoundError, match="now names another segment"):
            consumer.unlink()
        consumer.close()
        with pytest.raises(FileNotFoundError, match="now names another segment"):
            consumer.unlink()  # closed handles remember which file they had
        with SharedObject.attach(shm_name) as later:
            assert later.fetch() == 2
        restarted.unlink()  # the handle of the file the name names: removes it
    with pytest.raises(SegmentNotFoundError, match="no shared object named"):
        restarted.unlink()


def test_close_with_views_still_alive_is_safe(shm_name: str) -> None:
    obj = SharedObject.create(shm_name, np.ones(1000))
    kept = obj.fetch(lambda x: x)  # copied, so not a view; also hold an internal one
    obj.close()
    assert kept.sum() == 1000


@pytest.mark.parametrize("cls", [SharedObject, SharedDynamicObject])
def test_a_child_forked_while_a_thread_was_closing_can_still_close(
    shm_name: str, cls: type[SharedObject]
) -> None:
    """The lock that close() takes may be held by another thread at a fork; the child must not hang on it."""
    import os
    import signal

    with cls.create(shm_name, np.zeros(10)) as obj:
        obj._closing.acquire()  # as a thread in the middle of close() or a remap would hold it
        pid = os.fork()
        if pid == 0:  # the child: close (and exit) within the alarm, or be killed by it
            signal.signal(signal.SIGALRM, signal.SIG_DFL)  # not pytest-timeout's handler: just die
            signal.alarm(10)
            try:
                obj.assign(np.ones(10))
                obj.close()
                os._exit(0 if obj.closed else 1)
            except BaseException:  # noqa: BLE001 - any failure is the exit code
                os._exit(2)
        obj._closing.release()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0  # -14 (SIGALRM) when the child hung
        assert obj.fetch().sum() == 10  # the child's assign, through the parent's handle too


def test_init_size_is_checked(shm_name: str) -> None:
    with pytest.raises(ValueError, match="init_size"):
        SharedObject.create(shm_name, "x", init_size=-1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"init_size": -1}, "init_size must be a non-negative int"),
        ({"mode": 0o1777}, "mode must be permission bits"),
        ({"slots": 3}, "slots must be 1 or 2"),
    ],
)
def test_bad_constructor_arguments_are_in_the_hierarchy(
    shm_name: str, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        SharedObject.create(shm_name, "x", **arguments)
    with pytest.raises(SegmentNotFoundError):
        SharedObject.attach(shm_name)  # nothing was created


@pytest.mark.parametrize("call", ["wait", "attach", "readers lock"])
def test_timeouts_are_numbers_nan_is_refused_and_infinity_means_forever(
    shm_name: str, call: str, tmp_path: pytest.TempPathFactory
) -> None:
    import math
    import os

    with SharedObject.create(shm_name, 0) as obj:
        reader = SharedObject.attach(shm_name)
        lock_file = os.open(os.path.join(str(tmp_path), "lock"), os.O_CREAT | os.O_RDWR)
        waits = {
            "wait": reader.wait,
            "attach": lambda timeout: SharedObject.attach(shm_name + "-late", timeout=timeout),
            "readers lock": ReadersLock(lock_file).acquire,
        }
        wait = waits[call]
        try:
            # A NaN deadline never passes: attach(timeout=nan) used to wait forever.
            for bad, message in ((math.nan, "not NaN"), ("1", "not '1'"), (True, "not True")):
                with pytest.raises(
                    InvalidArgumentError,
                    match=f"timeout=...\\) must be a number of seconds or None, {message}",
                ):
                    wait(bad)
            # math.inf used to raise OverflowError; it waits until the event comes.
            if call == "wait":
                threading.Timer(0.2, lambda: obj.assign(1)).start()
                assert wait(math.inf) is True
            elif call == "attach":
                late = threading.Timer(
                    0.2, lambda: SharedObject.create(shm_name + "-late", 1).close()
                )
                late.start()
                try:
                    with wait(math.inf) as attached:
                        assert attached.fetch() == 1
                finally:
                    late.join()
                    SharedObject.attach(shm_name + "-late").unlink()
            else:
                wait(math.inf)
            # A negative timeout only looks, as in threading: `deadline - now` after the deadline.
            if call == "attach":
                with pytest.raises(
                    SegmentNotFoundError, match=r"no shared object named '[^']*-late' in \S+\. "
                ):
                    wait(-1)
            elif call == "wait":
                reader.fetch()  # seen: nothing new to wait for
                assert wait(-1) is False
        finally:
            reader.close()
            os.close(lock_file)
