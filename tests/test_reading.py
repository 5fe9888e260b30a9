"""Reading: private copies, fetch(fn) and its views, fetch(out=), view(), laps, and recycled results."""

from __future__ import annotations

import collections
import functools
import threading
import time
import tracemalloc
from typing import Any

import numpy as np
import pytest

from shared_object import (
    InvalidArgumentError,
    SharedObject,
    Tuning,
    TypeMismatchError,
    _layout,
    _reading,
)

from .markers import x86_lock_free_reads


def test_fetch_returns_private_copies(shm_name: str, read_path: Tuning) -> None:
    frame = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    with SharedObject.create(shm_name, {"f": frame, "l": [frame]}, tuning=read_path) as obj:
        got = obj.fetch()
        got["f"][:] = 0
        got["l"][0][:] = 0
        assert obj.fetch()["f"].sum() == frame.sum()
        assert got["f"].flags.writeable


def test_fetch_fn_sees_a_read_only_view_and_copies_only_when_needed(
    shm_name: str, read_path: Tuning
) -> None:
    frame = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    with SharedObject.create(shm_name, frame, tuning=read_path) as obj:

        def reduce(view: np.ndarray) -> float:
            assert not view.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                view[0, 0, 0] = 1
            return float(view.sum())

        assert obj.fetch(reduce) == frame.sum()
        sliced = obj.fetch(lambda x: x[..., 0])  # still points into shared memory: must be copied
        with obj.view() as shared:
            assert not np.shares_memory(sliced, shared.value)
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


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda v: collections.namedtuple("Pose", "p q")(v["p"], v["q"]), id="namedtuple"
        ),
        pytest.param(lambda v: _Holder(v["p"][1:]), id="object"),
        pytest.param(lambda v: [_Holder(np.asarray(v["p"]))], id="object in a list"),
        pytest.param(lambda v: lambda: v["p"], id="closure"),
        pytest.param(lambda v: memoryview(v["p"]), id="memoryview"),
        pytest.param(lambda v: {"p": memoryview(v["p"])[:2]}, id="memoryview slice in a dict"),
        pytest.param(lambda v: v["s"][0], id="structured element (a numpy.void is a view)"),
    ],
)
def test_fetch_fn_result_never_keeps_a_view_whatever_holds_it(
    shm_name: str, read_path: Tuning, make: Any
) -> None:
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
    with SharedObject.create(
        shm_name, {"p": np.arange(3.0), "q": np.ones(4), "s": np.zeros(2, record)}, tuning=read_path
    ) as obj:
        calls = []
        result = obj.fetch(lambda v: calls.append(1) or make(v))
        before = values(result)
        for _ in range(2):  # both slots: the one the views pointed into is rewritten too
            obj.assign({"p": np.full(3, 7.0), "q": np.zeros(4), "s": np.full(2, (7.0, 7), record)})
        assert values(result) == before and 7.0 not in before
        assert (
            len(calls) <= 2
        )  # once on the views, once more on a private copy where a view stayed held


def test_fetch_fn_runs_once_when_its_result_holds_no_view(shm_name: str, read_path: Tuning) -> None:
    with SharedObject.create(
        shm_name, {"p": np.arange(3.0), "frame": np.zeros((48, 64, 3), np.uint8)}, tuning=read_path
    ) as obj:
        for fn in (
            lambda v: v["p"].sum(),
            lambda v: v["p"][:2],
            lambda v: (v["p"], [v["frame"][0]]),
            lambda v: {"m": memoryview(v["p"])},
            lambda v: np.asarray(v["frame"]) + 1,
        ):
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


@x86_lock_free_reads
def test_zero_copy_view_reads_in_place_and_reports_tearing(shm_name: str) -> None:
    frame = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    with (
        SharedObject.create(shm_name, {"frame": frame, "seq": 1}) as writer,
        SharedObject.attach(shm_name) as reader,
    ):
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
    with (
        SharedObject.create(shm_name, np.zeros(1000), tuning=locked) as writer,
        SharedObject.attach(shm_name, tuning=locked) as reader,
    ):
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
    with (
        SharedObject.create(shm_name, np.zeros(1000)) as writer,
        SharedObject.attach(shm_name) as reader,
    ):
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
                writer.assign(frame).assign(
                    frame
                )  # two publications: the slot just read was rewritten
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
    with (
        SharedObject.create(shm_name, np.zeros(1 << 17)) as writer,
        SharedObject.attach(shm_name) as reader,
    ):
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


def test_fetch_raw_copies_into_the_callers_buffer_resized_to_the_payload(
    shm_name: str, read_path: Tuning
) -> None:
    frame = np.full((4, 6, 3), 1, np.uint8)
    with SharedObject.create(shm_name, frame, tuning=read_path) as obj:
        first = obj.fetch_raw()
        assert isinstance(first.payload, bytes) and first.payload == frame.tobytes()
        assert first.change == obj.seen_change and not obj.modified
        into = bytearray(len(first.payload))
        obj.assign(np.full((4, 6, 3), 2, np.uint8))
        second = obj.fetch_raw(into=into)
        assert second.payload is into
        assert into == bytes([2]) * frame.nbytes
        assert second.change == first.change + 1
        assert second.schema_text == first.schema_text
        # A buffer of another size is resized in place, and still is the payload.
        for size in (3, 1000):
            other = bytearray(size)
            third = obj.fetch_raw(into=other)
            assert third.payload is other and other == bytes(into)
        # One that must grow while something views it cannot: said so, not a lap.
        held = bytearray(3)
        with memoryview(held), pytest.raises(InvalidArgumentError, match="holds a view of it"):
            obj.fetch_raw(into=held)
