"""The SharedObject API in one process: the reference's semantics plus what we added."""

from __future__ import annotations

import collections
import functools
import pickle
import sys
import threading
import time
import traceback
import tracemalloc
from typing import Any

import numpy as np
import pytest

from shared_object import (
    ClosedError,
    InvalidArgumentError,
    LockTimeoutError,
    ReadersLock,
    SegmentExistsError,
    SegmentNotFoundError,
    SharedDynamicObject,
    SharedObject,
    Tuning,
    TypeMismatchError,
    _layout,
    _reading,
    _sync,
    _writer_lock,
    testing,
)

from .markers import x86_lock_free_reads


def test_reference_constructor_creates_attaches_and_assigns(shm_name: str) -> None:
    with SharedObject(shm_name, data=np.ones((4, 3))) as producer:
        with SharedObject(shm_name) as consumer:  # mounts the existing object
            assert consumer.fetch().sum() == 12
        with SharedObject(shm_name, data=np.zeros((4, 3))):  # attaches and assigns
            pass
        assert producer.fetch().sum() == 0


def test_a_handle_sees_its_own_trigger_but_not_its_own_assign(shm_name: str) -> None:
    """The reference's rule: its documented ``so.trigger(); so.triggered`` is True."""
    with SharedObject(shm_name) as so, SharedObject(shm_name) as other:
        so.trigger()
        assert so.modified and other.modified
        assert so.wait(0) and other.wait(0)  # wait() returns at once when modified would be True
        assert so.triggered and other.triggered
        assert not so.triggered and not so.modified and not so.wait(0)
    with SharedObject.create(shm_name + "-v", 1) as writer, SharedObject.attach(shm_name + "-v") as reader:
        writer.assign(2)
        assert not writer.modified and not writer.triggered and not writer.wait(0)
        assert reader.modified
        writer.trigger()  # seen again after the assign
        assert writer.modified
        writer.assign(3)  # an assign counts every earlier change as seen by its handle
        assert not writer.modified
        writer.unlink()


def test_reference_constructor_without_data_makes_a_trigger(shm_name: str) -> None:
    with SharedObject(shm_name) as trigger, SharedObject(shm_name) as listener:
        assert trigger.fetch() is None
        assert not listener.triggered
        trigger.trigger()
        assert listener.triggered
        assert not listener.triggered  # reading it resets it
        trigger.trigger().trigger()  # returns self; two changes before anyone looks
        assert listener.triggered and not listener.triggered


def test_modified_does_not_reset_until_fetch(shm_name: str, read_path: Tuning) -> None:
    with SharedObject.create(shm_name, 1, tuning=read_path) as writer, SharedObject.attach(shm_name, tuning=read_path) as reader:
        assert not reader.modified
        writer.assign(2)
        assert not writer.modified  # its own write does not count
        assert reader.modified and reader.modified
        assert reader.fetch() == 2
        assert not reader.modified
        writer.trigger()
        assert reader.modified


def test_mtime_moves_with_every_change(shm_name: str) -> None:
    before = time.time_ns()
    with SharedObject.create(shm_name, 1) as obj:
        created = obj.mtime
        assert before <= created <= time.time_ns()
        obj.assign(2)
        assigned = obj.mtime
        obj.trigger()
        assert created <= assigned <= obj.mtime


def test_assign_returns_self(shm_name: str) -> None:
    with SharedObject.create(shm_name, 1) as obj:
        assert obj.assign(3) is obj
        assert obj.assign(4).fetch() == 4


def test_fetch_returns_private_copies(shm_name: str, read_path: Tuning) -> None:
    frame = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    with SharedObject.create(shm_name, {"f": frame, "l": [frame]}, tuning=read_path) as obj:
        got = obj.fetch()
        got["f"][:] = 0
        got["l"][0][:] = 0
        assert obj.fetch()["f"].sum() == frame.sum()
        assert got["f"].flags.writeable


def test_fetch_fn_sees_a_read_only_view_and_copies_only_when_needed(shm_name: str, read_path: Tuning) -> None:
    frame = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    with SharedObject.create(shm_name, frame, tuning=read_path) as obj:
        def reduce(view: np.ndarray) -> float:
            assert not view.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                view[0, 0, 0] = 1
            return float(view.sum())

        assert obj.fetch(reduce) == frame.sum()
        sliced = obj.fetch(lambda x: x[..., 0])  # still points into shared memory: must be copied
        assert sliced.flags.owndata or sliced.base is not None
        obj.assign(frame * 2)
        assert sliced.tolist() == frame[..., 0].tolist()  # the copy did not follow the write
        plus = obj.fetch(lambda x: x + 1)
        assert plus.flags.writeable and plus[0, 0, 0] == 1
        pair = obj.fetch(lambda x: (x[0], x[1].sum()))
        obj.assign(frame * 0)
        assert pair[0].sum() == (frame * 2)[0].sum()


class _Holder:
    """An object of the caller's that keeps what it is given (as torch.from_numpy keeps its array)."""

    def __init__(self, array: np.ndarray[Any, Any]) -> None:
        self.array = array


@pytest.mark.parametrize("make", [
    pytest.param(lambda v: collections.namedtuple("Pose", "p q")(v["p"], v["q"]), id="namedtuple"),
    pytest.param(lambda v: _Holder(v["p"][1:]), id="object"),
    pytest.param(lambda v: [_Holder(np.asarray(v["p"]))], id="object in a list"),
    pytest.param(lambda v: (lambda: v["p"]), id="closure"),
    pytest.param(lambda v: memoryview(v["p"]), id="memoryview"),
    pytest.param(lambda v: {"p": memoryview(v["p"])[:2]}, id="memoryview slice in a dict"),
    pytest.param(lambda v: v["s"][0], id="structured element (a numpy.void is a view)"),
])
def test_fetch_fn_result_never_keeps_a_view_whatever_holds_it(shm_name: str, read_path: Tuning, make: Any) -> None:
    # fetch(fn) copies the views left in fn's result. It used to look only inside tuples, lists and
    # dicts: a namedtuple, an object of the caller's or a closure kept a live view, which showed
    # every later assign (a pose that changed under the policy that held it).
    def values(result: Any) -> list[float]:
        if callable(result):
            result = result()
        if isinstance(result, dict):
            result = result["p"]
        if isinstance(result, (list, tuple)):
            result = result[0]
        if isinstance(result, _Holder):
            result = result.array
        return np.asarray(result).reshape(-1).tolist()

    record = np.dtype([("x", "f8"), ("n", "i4")])
    with SharedObject.create(shm_name, {"p": np.arange(3.0), "q": np.ones(4), "s": np.zeros(2, record)}, tuning=read_path) as obj:
        calls = []
        result = obj.fetch(lambda v: calls.append(1) or make(v))
        before = values(result)
        for _ in range(2):  # both slots: the one the views pointed into is rewritten too
            obj.assign({"p": np.full(3, 7.0), "q": np.zeros(4), "s": np.full(2, (7.0, 7), record)})
        assert values(result) == before and 7.0 not in before
        assert len(calls) <= 2  # once on the views, once more on a private copy where a view stayed held


def test_fetch_fn_runs_once_when_its_result_holds_no_view(shm_name: str, read_path: Tuning) -> None:
    with SharedObject.create(shm_name, {"p": np.arange(3.0), "frame": np.zeros((48, 64, 3), np.uint8)}, tuning=read_path) as obj:
        for fn in (lambda v: v["p"].sum(), lambda v: v["p"][:2], lambda v: (v["p"], [v["frame"][0]]),
                   lambda v: {"m": memoryview(v["p"])}, lambda v: np.asarray(v["frame"]) + 1):
            calls = []
            obj.fetch(lambda v, fn=fn, calls=calls: calls.append(1) or fn(v))
            assert len(calls) == 1


def test_fetch_into_preallocated_array(shm_name: str, read_path: Tuning) -> None:
    with SharedObject.create(shm_name, np.full((3, 4), 7, np.int32), tuning=read_path) as obj:
        out = np.empty((3, 4), np.int32)
        assert obj.fetch(out=out) is out
        assert out.sum() == 84
        with pytest.raises(TypeMismatchError, match="out is ndarray"):
            obj.fetch(out=np.empty((4, 3), np.int32))


def test_fetch_refuses_arguments_it_cannot_honour(shm_name: str, read_path: Tuning) -> None:
    with SharedObject.create(shm_name, np.full((3, 4), 7, np.int32), tuning=read_path) as obj:
        read_only = np.zeros((3, 4), np.int32)
        read_only.flags.writeable = False
        # Used to be reported as a corrupt segment (LayoutError), which it is not.
        with pytest.raises(InvalidArgumentError, match="out is read-only"):
            obj.fetch(out=read_only)
        out = np.zeros((3, 4), np.int32)
        # fn used to be ignored silently when out= was given too.
        with pytest.raises(InvalidArgumentError, match="fn or out=, not both"):
            obj.fetch(lambda x: x * 2, out=out)
        with pytest.raises(InvalidArgumentError, match="fn must be callable"):
            obj.fetch(3)  # type: ignore[arg-type]
        assert not out.any() and not read_only.any()
        assert obj.fetch().sum() == 84


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
                with pytest.raises(InvalidArgumentError, match=f"timeout=...\\) must be a number of seconds or None, {message}"):
                    wait(bad)
            # math.inf used to raise OverflowError; it waits until the event comes.
            if call == "wait":
                threading.Timer(0.2, lambda: obj.assign(1)).start()
                assert wait(math.inf) is True
            elif call == "attach":
                late = threading.Timer(0.2, lambda: SharedObject.create(shm_name + "-late", 1).close())
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
                with pytest.raises(SegmentNotFoundError, match=r"no shared object named '[^']*-late' in \S+\. "):
                    wait(-1)
            elif call == "wait":
                reader.fetch()  # seen: nothing new to wait for
                assert wait(-1) is False
        finally:
            reader.close()
            os.close(lock_file)


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
        assert repr(obj) == f"SharedObject({shm_name!r}, type=ndarray[uint8, (480, 848, 3)], size=1221120 bytes)"
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
    for action in (obj.fetch, lambda: obj.assign(2), obj.trigger, lambda: obj.wait(0), lambda: obj.fetch(lambda x: x),
                   lambda: obj.view().__enter__()):
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
def test_a_child_forked_while_a_thread_was_closing_can_still_close(shm_name: str, cls: type[SharedObject]) -> None:
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


def test_closing_a_handle_that_other_threads_use_gives_them_closed_error(shm_name: str, read_path: Tuning) -> None:
    """A sensor thread assigning, a waiter, a slow fetch(fn) and a view, while the main thread closes.

    Each used to fail with "operation forbidden on released memoryview" (a view's exit with
    IndexError), and a waiter slept on for up to a second. Now a call already running finishes,
    and the next one raises ClosedError.
    """
    with SharedObject.create(shm_name, np.zeros(1_000_000), tuning=read_path) as owner, SharedObject.create(shm_name + "-idle", 0, tuning=read_path) as idle:
        outcomes: dict[str, str] = {}

        def run(what: str, action: Any) -> None:
            try:
                outcomes[what] = f"returned {action()}"
            except ClosedError as exc:
                outcomes[what] = str(exc)
            except Exception as exc:  # noqa: BLE001 - the test reports anything else as it is
                outcomes[what] = f"{type(exc).__name__}: {exc}"

        def assign_forever(handle: SharedObject) -> None:
            ones = np.ones(1_000_000)
            while True:
                handle.assign(ones)

        handles = {
            "assign": SharedObject.attach(shm_name, tuning=read_path),
            "wait": SharedObject.attach(shm_name + "-idle", tuning=read_path),  # nobody writes it: only close() ends the wait
            "fetch(fn)": SharedObject.attach(shm_name, tuning=read_path),
        }
        actions = {
            "assign": lambda: assign_forever(handles["assign"]),
            "wait": lambda: handles["wait"].wait(30),
            "fetch(fn)": lambda: handles["fetch(fn)"].fetch(lambda x: time.sleep(0.5) or x.sum()),
        }
        threads = [threading.Thread(target=run, args=(what, action)) for what, action in actions.items()]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        started = time.monotonic()
        for handle in handles.values():
            handle.close()
        for thread in threads:
            thread.join(timeout=10)
        assert time.monotonic() - started < 5  # the waiter was woken, not left to sleep 30 s
        closed = f"the handle on '{shm_name}"
        assert outcomes["assign"] == f"{closed}' is closed"
        assert outcomes["wait"] == f"{closed}-idle' is closed"
        # It had started, so it finishes, unless the writer lapped it and it must read again.
        assert outcomes["fetch(fn)"] in ("returned 0.0", "returned 1000000.0", f"{closed}' was closed during fetch")

        viewer = SharedObject.attach(shm_name, tuning=read_path)
        with viewer.view() as view:
            viewer.close()
            assert view.value.shape == (1_000_000,)  # still mapped: reading cannot crash
        assert not view.torn  # nobody wrote during the block, closed handle or not

        assert owner.assign(np.full(1_000_000, 2.0)).fetch().sum() == 2_000_000  # the object is fine
        idle.unlink()


def _next_size(handle: SharedObject, sizes: dict[int, int] = {}) -> int:  # noqa: B006 - a per-handle counter
    sizes[id(handle)] = size = sizes.get(id(handle), 10) * 3 // 2 % 2_000_000 + 1
    return size


CALLS_IN_A_LOOP = {
    "assign": lambda h: h.assign(np.ones(1000)),
    "assign a compound": lambda h: h.assign({"frame": np.ones(1000), "seq": 1}),
    "assign a new size": lambda h: h.assign(np.ones(int(np.random.default_rng().integers(1, 3000)))),
    # Grows the file (and remaps) every few calls: a remap used to reopen a handle closed meanwhile.
    "assign, growing": lambda h: h.assign(np.ones(_next_size(h))),
    "fetch": lambda h: h.fetch(),
    "fetch(fn)": lambda h: h.fetch(lambda x: x),
    "view": lambda h: h.view().__enter__().__exit__(None, None, None),
    "trigger": lambda h: h.trigger(),
    "wait(0)": lambda h: h.wait(0),
    "modified": lambda h: h.modified,
}


@pytest.mark.parametrize(
    ("cls", "call"),
    [(cls, call) for cls in (SharedObject, SharedDynamicObject) for call in CALLS_IN_A_LOOP
     if cls is SharedDynamicObject or call not in ("assign a new size", "assign, growing")],
)
def test_every_call_in_a_loop_ends_with_closed_error_when_another_thread_closes(
    shm_name: str, cls: type[SharedObject], call: str
) -> None:
    """close() replaces a handle's fields one by one; a call caught in between must say "closed".

    The interpreter switches threads every microsecond here (instead of 5 ms), so calls are
    caught at every point of close(). Before, 1-23% of the closes in one run ended a loop with
    AttributeError, IndexError or struct.error instead, and a dynamic assign could make close()
    itself fail (RuntimeError: dictionary changed size during iteration).
    """
    compound = call == "assign a compound"
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with cls.create(shm_name, {"frame": np.zeros(1000), "seq": 0} if compound else np.zeros(1000)) as owner:
            for trial in range(300 if call == "assign, growing" else 40):  # 2 in 300 reopened, before
                handle = cls.attach(shm_name)
                ended: list[BaseException] = []

                def loop(handle: SharedObject = handle, ended: list[BaseException] = ended) -> None:
                    try:
                        while True:
                            CALLS_IN_A_LOOP[call](handle)
                    except BaseException as exc:  # noqa: BLE001 - the test checks what it was
                        ended.append(exc)

                thread = threading.Thread(target=loop)
                thread.start()
                time.sleep(0.0005 * (trial % 8))
                handle.close()
                thread.join(timeout=10)
                assert len(ended) == 1, ended
                assert handle.closed  # a dynamic assign that remapped could make it look open again
                assert isinstance(ended[0], ClosedError), "".join(traceback.format_exception(ended[0]))
                assert str(ended[0]).startswith(f"the handle on '{shm_name}'")
            assert owner.fetch()["seq"] == 1 if compound else len(owner.fetch()) >= 1  # the object still reads
    finally:
        sys.setswitchinterval(switch_interval)


def test_wait_returns_at_once_when_already_changed(shm_name: str) -> None:
    with SharedObject.create(shm_name, 1) as writer, SharedObject.attach(shm_name) as reader:
        assert reader.wait(0) is False
        writer.assign(2)
        started = time.monotonic()
        assert reader.wait(10) is True
        assert time.monotonic() - started < 5
        assert reader.wait(0) is True  # still unseen until fetched
        reader.fetch()
        assert reader.wait(0.05) is False


def test_wait_wakes_on_assign_from_another_thread(shm_name: str) -> None:
    with SharedObject.create(shm_name, 0) as writer, SharedObject.attach(shm_name) as reader:
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(reader.wait(30)))
        waiter.start()
        time.sleep(0.2)
        writer.assign(1)
        waiter.join(30)
        assert woke == [True]
        assert reader.fetch() == 1


def test_wait_timeout_returns_false(shm_name: str) -> None:
    with SharedObject.create(shm_name, 0) as obj:
        started = time.monotonic()
        assert obj.wait(0.1) is False
        assert time.monotonic() - started >= 0.09


def test_readers_lock_is_a_shared_flock(tmp_path: pytest.TempPathFactory) -> None:
    import fcntl
    import os

    path = os.path.join(str(tmp_path), "lockfile")
    fd1 = os.open(path, os.O_CREAT | os.O_RDWR)
    fd2 = os.open(path, os.O_RDWR)
    fd3 = os.open(path, os.O_RDWR)
    try:
        with ReadersLock(fd1):
            ReadersLock(fd2).acquire(timeout=1)  # readers share
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd3, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a writer is kept out
            ReadersLock(fd2).release()
        fcntl.flock(fd3, fcntl.LOCK_EX)
        from shared_object import LockTimeoutError

        with pytest.raises(LockTimeoutError):
            ReadersLock(fd1).acquire(timeout=0.05)
    finally:
        for fd in (fd1, fd2, fd3):
            os.close(fd)


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
def test_bad_constructor_arguments_are_in_the_hierarchy(shm_name: str, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        SharedObject.create(shm_name, "x", **arguments)
    with pytest.raises(SegmentNotFoundError):
        SharedObject.attach(shm_name)  # nothing was created


@pytest.mark.parametrize("fd", [-1, "3", None, True, 2.0])
def test_readers_lock_needs_a_file_descriptor(fd: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="ReadersLock needs an open file descriptor"):
        ReadersLock(fd)


def test_readers_lock_takes_a_file_object(tmp_path: pytest.TempPathFactory) -> None:
    import fcntl
    import os

    path = os.path.join(str(tmp_path), "lockfile")
    with open(path, "w") as file, open(path) as other:
        with ReadersLock(file), pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released


@pytest.mark.parametrize(
    ("slots", "locked_reads"), [(2, False), (2, True), (1, False)], ids=["two slots", "two slots, locked reads", "one slot"]
)
def test_threads_sharing_one_handle_never_tear(
    shm_name: str, slots: int, locked_reads: bool
) -> None:
    # Locked reads: as on aarch64 (see conftest's read_path); single-slot handles read locked everywhere.
    tuning = Tuning(lock_free_reads=False) if locked_reads else Tuning()
    a, b = np.zeros(100_000), np.ones(100_000)
    with SharedObject.create(shm_name, a, slots=slots, tuning=tuning) as obj:
        stop = time.monotonic() + 1.0
        errors: list[str] = []

        def write() -> None:
            while time.monotonic() < stop:
                obj.assign(a)
                obj.assign(b)

        def read() -> None:
            previous = obj.fetch()
            while time.monotonic() < stop:
                got = obj.fetch()
                reads.append(1)
                if got.min() != got.max():
                    errors.append("torn")
                if got is previous or previous.min() != previous.max():
                    errors.append("a result still held was reused")  # fetch recycles only dropped arrays
                previous = got
                with obj.view() as v:
                    seen = v.value.min() == v.value.max()
                if not (seen or v.torn):
                    errors.append("a view mixed two values without saying so")

        reads: list[int] = []
        threads = [threading.Thread(target=f) for f in (write, write, read, read)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(reads) > 10, "readers made no progress against two busy writers"


@x86_lock_free_reads
def test_zero_copy_view_reads_in_place_and_reports_tearing(shm_name: str) -> None:
    frame = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    with SharedObject.create(shm_name, {"frame": frame, "seq": 1}) as writer, SharedObject.attach(shm_name) as reader:
        with reader.view() as v:
            view = v.value["frame"]
            assert not view.flags.writeable and not view.flags.owndata  # a view into shared memory
            assert view.sum() == frame.sum()
        assert v.torn is False and v.value is None  # views are dropped when the block ends

        writer.assign({"frame": frame * 2, "seq": 2})
        assert reader.modified
        with reader.view() as v:
            writer.assign({"frame": frame * 3, "seq": 3})  # goes to the other slot: ours is intact
            seen = v.value["seq"]
        assert v.torn is False and seen == 2
        assert reader.modified  # seq 3 is still unseen

        with reader.view() as v:
            writer.assign({"frame": frame * 4, "seq": 4})
            writer.assign({"frame": frame * 5, "seq": 5})  # this one overwrote the viewed slot
        assert v.torn is True
        assert reader.modified
        with reader.view() as v:
            assert v.value["seq"] == 5
        assert not v.torn and not reader.modified


def test_a_view_under_locked_reads_holds_writers_off_and_is_never_torn(shm_name: str) -> None:
    """Where reads take the writer mutex (aarch64), a view holds it for the block: writers wait."""
    locked = Tuning(lock_free_reads=False)
    with SharedObject.create(shm_name, np.zeros(1000), tuning=locked) as writer, \
            SharedObject.attach(shm_name, tuning=locked) as reader:
        assigned = threading.Event()
        thread = threading.Thread(target=lambda: (writer.assign(np.ones(1000)), assigned.set()))
        with reader.view() as v:
            thread.start()
            time.sleep(0.2)  # the writer is blocked on the mutex for as long as the block lasts
            blocked = not assigned.is_set()
            total = float(v.value.sum())
        thread.join(5)
        assert blocked and assigned.is_set()
        assert total == 0 and v.torn is False
        assert reader.modified and reader.fetch().sum() == 1000

def _simulate_writer_starting(obj: SharedObject) -> None:
    """Set the WRITING mark as a writer does before filling the slot readers are not reading."""
    obj._words[_layout.STATE_WORD] |= _layout.WRITING  # noqa: SLF001 - white-box: the layout rule itself


def test_a_writer_filling_the_other_slot_is_not_a_lap(shm_name: str) -> None:
    # Regression: readers treated any change of the state word as a lap, so under a busy writer
    # (whose WRITING mark is set most of the time) nearly every lock-free read was thrown away.
    with SharedObject.create(shm_name, np.zeros(1000)) as writer, SharedObject.attach(shm_name) as reader:
        calls = 0

        def reduce(x: np.ndarray) -> float:
            nonlocal calls
            calls += 1
            _simulate_writer_starting(writer)
            return float(x.sum())

        assert reader.fetch(reduce) == 0.0
        assert calls == 1  # not retried: the slot it read was never touched
        with reader.view() as v:
            _simulate_writer_starting(writer)
        assert not v.torn
        writer.assign(np.ones(1000))  # the next publication clears the mark
        assert reader.fetch().sum() == 1000


@x86_lock_free_reads
def test_a_lapped_fetch_frees_its_copy_before_reading_again(shm_name: str) -> None:
    # Regression: the fast path kept its lapped copy alive while the retry made another, so a
    # big fetch briefly held two copies; freeing both at once let glibc trim the heap, and every
    # later fetch page-faulted its memory back in (500 us instead of 27 us for 1.2 MB).
    frame = np.zeros(1 << 20, np.uint8)
    with SharedObject.create(shm_name, frame) as writer, SharedObject.attach(shm_name) as reader:
        slots = reader._slots  # noqa: SLF001 - white-box: make exactly one read lapped
        reads = [slot.read for slot in slots]  # type: ignore[union-attr]
        lapped = False

        def read_then_lap(index: int) -> np.ndarray:
            nonlocal lapped
            value = reads[index]()
            if not lapped:
                lapped = True
                writer.assign(frame).assign(frame)  # two publications: the slot just read was rewritten
            return value

        for index, slot in enumerate(slots):
            slot.read = functools.partial(read_then_lap, index)  # type: ignore[union-attr]
        tracemalloc.start()
        try:
            got = reader.fetch()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert lapped and got.nbytes == frame.nbytes
        assert peak < 1.5 * frame.nbytes, f"peak {peak} bytes: two copies alive at once"


def test_fetch_reuses_a_dropped_result_and_never_one_still_held(shm_name: str) -> None:
    frame = np.arange(1 << 18, dtype=np.float64)  # 2 MiB: big enough to be recycled
    with SharedObject.create(shm_name, frame) as writer, SharedObject.attach(shm_name) as reader:
        first = reader.fetch()
        address = first.ctypes.data
        del first
        second = reader.fetch()
        third = reader.fetch()  # second is held: a new array
        assert second.ctypes.data == address, "a dropped result's memory is reused"
        assert third.ctypes.data != second.ctypes.data

        kept_view = second[:4]  # a view keeps its base alive, so second is not reused
        del second
        held_as_memoryview = memoryview(third)
        del third
        writer.assign(frame + 1)
        fourth = reader.fetch()
        assert kept_view.tolist() == [0.0, 1.0, 2.0, 3.0]  # untouched by the later fetch
        assert np.frombuffer(held_as_memoryview, np.float64)[:2].tolist() == [0.0, 1.0]
        assert fourth[:2].tolist() == [1.0, 2.0]
        assert fourth.flags.writeable and fourth.flags.owndata


def test_a_result_you_keep_is_never_overwritten_by_later_fetches(shm_name: str) -> None:
    # Reuse decides "dropped" from a reference count. Python 3.14 reports one less for a local
    # (it borrows the argument's reference), and the fixed count this used (2) then took a frame
    # held by one name for free: the kept frame read 3.0, the latest value, instead of 0.0.
    with SharedObject.create(shm_name, np.zeros(1 << 17)) as writer, SharedObject.attach(shm_name) as reader:
        kept = reader.fetch()
        for value in (1.0, 2.0, 3.0):
            writer.assign(np.full(1 << 17, value))
            latest = reader.fetch()
            assert latest[0] == value
            assert kept[0] == 0.0 and kept.ctypes.data != latest.ctypes.data


def test_a_fetch_loop_stops_allocating(shm_name: str) -> None:
    with SharedObject.create(shm_name, np.zeros(1 << 20, np.uint8)) as obj:
        frame = obj.fetch()
        frame = obj.fetch()  # the usual loop: the previous result is still bound while fetch runs
        tracemalloc.start()
        try:
            for _ in range(5):
                frame = obj.fetch()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert frame.nbytes == 1 << 20
        assert peak < 64 * 1024, f"a steady fetch loop allocated {peak} bytes"


@pytest.mark.parametrize(
    ("cls", "operation"),
    [
        (SharedObject, lambda obj: obj.assign(np.ones(1000))),
        (SharedObject, lambda obj: obj.trigger()),
        (SharedDynamicObject, lambda obj: obj.assign(np.ones(5))),
    ],
    ids=["assign", "trigger", "dynamic assign"],
)
def test_a_stuck_writer_makes_other_writers_time_out_not_hang(
    shm_name: str, monkeypatch: pytest.MonkeyPatch, cls: type[SharedObject], operation: Any
) -> None:
    """A writer frozen while holding the lock (debugger, SIGSTOP, corrupt lock bytes) must not hang the next."""
    quick = Tuning(lock_timeout_s=0.2)
    with cls.create(shm_name, np.zeros(1000)) as stuck, cls.attach(shm_name, tuning=quick) as writer:
        taken, done = threading.Event(), threading.Event()
        mutex = testing.writer_mutex(stuck)

        def hold_the_lock() -> None:
            mutex.acquire()
            taken.set()
            done.wait(30)
            mutex.release()

        thread = threading.Thread(target=hold_the_lock)
        thread.start()
        try:
            assert taken.wait(30)
            with pytest.raises(LockTimeoutError, match=f"{shm_name}.*stayed taken for 0.2 s") as caught:
                operation(writer)
            native = _sync.robust_locks_supported() is not False  # this kernel would release a dead holder's lock
            assert ("qemu-user" in str(caught.value)) != native
            if _sync.LOCK_FREE_READS:
                assert writer.fetch().sum() == 0  # two slots: readers never needed the lock
            else:  # aarch64: reads take the lock too
                with pytest.raises(LockTimeoutError):
                    writer.fetch()
            monkeypatch.setattr(_writer_lock, "robust_locks_supported", lambda: False)  # as under qemu-user
            with pytest.raises(LockTimeoutError, match="holder died.*qemu-user.*shared-object doctor"):
                operation(writer)
        finally:
            done.set()
            thread.join()
        operation(writer)  # and writing works again once the lock is free
        assert writer.fetch().sum() in (0, 1000, 5)
        stuck.unlink()


@x86_lock_free_reads
def test_a_lapped_handle_goes_back_to_lock_free_retries_once_its_copies_are_fast(
    shm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading under the mutex blocks the writer, so only handles whose copies are slow skip the
    lock-free retries, and fetch_locked re-measures each time: slowness is not a life sentence."""
    # A patched clock, not a real copy time: a loaded CI machine once took more than half the
    # budget for an 8 KB copy. Each reading of the clock comes ``step`` ns after the last.
    step = 0

    def clock() -> int:
        nonlocal now
        now += step
        return now

    now = 0
    monkeypatch.setattr(_reading, "_monotonic_ns", clock)
    budget = Tuning().optimistic_budget_ns
    with SharedObject.create(shm_name, np.arange(1000.0)) as obj:
        obj._slow_reads = True
        step = budget // 10  # a fast copy
        assert _reading.fetch_locked(obj, None, None)[999] == 999.0
        assert obj._slow_reads is False

        step = budget  # a copy that takes a whole budget
        _reading.fetch_locked(obj, None, None)
        assert obj._slow_reads is True
        obj.unlink()


@pytest.mark.parametrize("slots", [2, 1])
def test_an_exception_from_outside_decoding_propagates_as_itself(shm_name: str, slots: int) -> None:
    """Regression: any exception during a read (one a signal handler raised, say) became a
    LayoutError naming the segment corrupt, or was swallowed and the read retried."""

    class FromAHandlerError(Exception):
        pass

    def interrupted() -> Any:
        raise FromAHandlerError

    with SharedObject.create(shm_name, np.zeros(1000), slots=slots) as obj:
        for slot in obj._slots:
            slot.read = interrupted  # type: ignore[union-attr]
        with pytest.raises(FromAHandlerError):
            obj.fetch()
