"""SharedDynamicObject: the value may change type, size, dtype, shape or structure."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import helpers
import numpy as np
import pytest
from helpers import same
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_object import (
    SharedDynamicObject,
    SharedObject,
    UnsupportedTypeError,
    _codecs,
    _schema,
    _segment,
)

from .markers import x86_lock_free_reads


def test_changes_kind_and_size_and_other_handles_follow(shm_name: str) -> None:
    with (
        SharedDynamicObject.create(shm_name, 1) as writer,
        SharedDynamicObject.attach(shm_name) as reader,
    ):
        sequence = [
            "text",
            np.zeros((2, 3)),
            np.ones((640, 480, 3), np.uint8),
            {"a": [1, 2], "b": np.arange(5)},
            "x" * 100_000,
            None,
            3.5,
            np.ones((10,), np.float32),
            (1, (2, (3,))),
        ]
        for value in sequence:
            writer.assign(value)
            assert same(reader.fetch(), value)
            assert reader.kind == writer.kind


def test_growth_keeps_earlier_handles_valid(shm_name: str) -> None:
    with SharedDynamicObject.create(shm_name, np.zeros(10)) as writer:
        reader = SharedDynamicObject.attach(shm_name)
        for size in (10, 1000, 100_000, 10, 2_000_000):
            writer.assign(np.full(size, float(size)))
            got = reader.fetch()
            assert got.shape == (size,) and got[0] == size
        reader.close()


def test_a_value_grown_in_steps_reuses_the_places_it_outgrew(shm_name: str) -> None:
    # A slot that outgrows its place moves. It used to move to the end of the file every time,
    # leaving every place behind: a 20 MiB array grown 1 MiB at a time made a 126 MiB file.
    mib = 2**20
    path = f"{_segment.SHM_DIR}/{shm_name}"
    with (
        SharedDynamicObject.create(shm_name, np.zeros(mib, np.uint8)) as writer,
        SharedDynamicObject.attach(shm_name) as reader,
    ):
        for size in range(1, 21):
            writer.assign(np.full(size * mib, size, np.uint8))
            got = reader.fetch()
            assert got.shape == (size * mib,) and got[0] == got[-1] == size
        size_of_file, used = os.stat(path).st_size, os.stat(path).st_blocks * 512
        # two places of at most 1.5x the value each (a place grows by half at least), and a header page
        bound = 2 * 1.5 * 20 * mib + mib
        assert size_of_file <= bound and used <= bound, (
            f"{size_of_file / mib:.1f} MiB file for a 20 MiB value"
        )
        writer.assign(np.zeros(3))  # both slots keep working
        assert reader.fetch().shape == (3,)


def test_a_value_grown_in_steps_fits_in_a_containers_default_shm(
    in_small_shm: Callable[[str, str], Any],
) -> None:
    """In a 64 MiB /dev/shm (Docker's default) a value grown 1 MiB at a time used to fail at 13 MiB."""
    code = (
        "import numpy as np\n"
        "from shared_object import SharedDynamicObject, OutOfSharedMemoryError\n"
        "mib = 2**20\n"
        "d = SharedDynamicObject.create('grow', np.zeros(mib, np.uint8))\n"
        "reader = SharedDynamicObject.attach('grow')\n"
        "for size in range(1, 26):\n"
        "    d.assign(np.full(size * mib, size, np.uint8))\n"
        "    assert reader.fetch()[-1] == size\n"
        "print('REACHED', size)\n"
        "try:\n    d.assign(np.zeros(40 * mib, np.uint8))\n"
        "except OutOfSharedMemoryError as e:\n    print('REFUSED', e)\n"
        "got = reader.fetch()\n"
        "print('KEPT', got.size // mib, got[0], got[-1])\n"
        "d.assign('small')\n"
        "print('THEN', reader.fetch())\n"
    )
    result = in_small_shm("64m", code)
    assert result.returncode == 0, result.stderr
    assert "REACHED 25" in result.stdout
    assert (
        "REFUSED" in result.stdout and "shm_size" in result.stdout
    )  # 2 x 40 MiB cannot fit: a clear error
    assert (
        "KEPT 25 25 25" in result.stdout and "THEN small" in result.stdout
    )  # and the stored value survived it


def test_a_writer_follows_a_slot_another_writer_moved_past_its_mapping(shm_name: str) -> None:
    # Two writers: the second mapped the file before the first moved slot 0 to its end, and
    # the current slot (1) still lies within its mapping. Its assign read slot 0's header past
    # its mapping and failed with struct.error.
    with SharedDynamicObject.create(shm_name, np.zeros(10)) as first:
        first.assign(np.zeros(100_000))  # slot 1 moves to the end of the file
        with SharedDynamicObject.attach(shm_name) as second:  # maps the file as it is now
            first.assign(np.zeros(1_000_000))  # slot 0 moves past the second's mapping
            first.assign(np.ones(100_000))  # fits slot 1's place: slot 1 is current again
            second.assign(np.full(100_000, 2.0))
            assert first.fetch()[0] == 2.0 and second.fetch().shape == (100_000,)
            second.assign(np.full(1_000_000, 3.0))  # and into the slot it had never seen
            assert first.fetch()[-1] == 3.0


def test_a_writer_dying_right_after_a_move_leaves_a_place_that_matches_no_schema(
    shm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A moved slot's new place holds old bytes (places are reused). A writer that died after
    # pointing the slot there, before writing its header, left those bytes for the next writer
    # to take for a header when their first 8 matched its schema id.
    from shared_object import _layout

    with (
        SharedDynamicObject.create(shm_name, np.zeros(100_000)) as writer,
        SharedDynamicObject.attach(shm_name) as reader,
    ):
        real = _layout.write_slot_header

        def die(*args: object) -> None:
            raise KeyboardInterrupt  # stands for the writer being killed here

        monkeypatch.setattr(_layout, "write_slot_header", die)
        with pytest.raises(KeyboardInterrupt):
            writer.assign(np.ones(300_000))  # slot 1 moves, onto its old place's bytes
        monkeypatch.setattr(_layout, "write_slot_header", real)
        offset, _ = _layout.SLOT_ENTRY.unpack_from(writer._buf, _layout.slot_entry_offset(1))
        assert (
            _layout.U64.unpack_from(writer._buf, offset)[0] == 0
        )  # no schema: written anew next time
        assert reader.fetch().sum() == 0  # the last complete value
        writer.assign(np.ones(300_000))
        assert reader.fetch().sum() == 300_000


def test_a_writer_dying_while_writing_a_slot_header_leaves_it_matching_no_schema(
    shm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The header's schema id was written first, then the schema text: a writer killed in between
    # left an id that promised a text it had not finished, for the next writer (and readers) to trust.
    from shared_object import _layout

    class DiesAfterPacking:
        def __init__(self, real: Any) -> None:
            self.real = real

        def pack_into(self, *args: Any) -> None:
            self.real.pack_into(*args)
            raise KeyboardInterrupt  # stands for the writer being killed here

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    with (
        SharedDynamicObject.create(shm_name, 1) as writer,
        SharedDynamicObject.attach(shm_name) as reader,
    ):
        writer.assign("a str: a new kind, in slot 1")
        real = _layout.SLOT_HEADER
        monkeypatch.setattr(_layout, "SLOT_HEADER", DiesAfterPacking(real))
        with pytest.raises(KeyboardInterrupt):
            writer.assign("the same kind, into slot 0, which still holds the int's header")
        monkeypatch.setattr(_layout, "SLOT_HEADER", real)
        offset, _ = _layout.SLOT_ENTRY.unpack_from(writer._buf, _layout.SLOT_TABLE_OFFSET)
        assert _layout.U64.unpack_from(writer._buf, offset)[0] == 0
        assert reader.fetch() == "a str: a new kind, in slot 1"
        writer.assign("next")
        assert reader.fetch() == "next"


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (1.5, 3),
        (1.5, np.float32(0.5)),
        (1j, 2.0),
        (1, np.int64(5)),
        ((1.0, 2.0), (3, 4)),
        ({"gain": 1.0, "on": True}, {"gain": 7, "on": False}),
        ({1, 2.5}, {1.5, 2}),
        ("abc", np.str_("x")),
        (b"x", np.bytes_(b"y\x00")),
        (np.zeros(2, [("x", "<f4")]), np.ones(2, [("x", "<f4")])),
    ],
    ids=repr,
)
def test_each_value_reads_back_as_the_type_assigned_not_the_kind_held(
    shm_name: str, first: Any, then: Any
) -> None:
    # It kept the schema whenever the value fit it after a conversion: 3 assigned after 1.5 read
    # back 3.0, np.float32(0.5) a Python float. The last row fits as it is: the schema is kept.
    with (
        SharedDynamicObject.create(shm_name, first) as writer,
        SharedDynamicObject.attach(shm_name) as reader,
    ):
        assert same(reader.fetch(), first)
        writer.assign(then)
        assert same(reader.fetch(), then)
        writer.assign(first)
        assert same(reader.fetch(), first)
        writer.unlink()


def test_a_value_that_fits_as_it_is_keeps_the_schema(shm_name: str) -> None:
    from shared_object import _layout

    with SharedDynamicObject.create(
        shm_name, {"pose": np.zeros(7), "name": "a", "rec": np.zeros(1, [("t", "<f8")])}
    ) as obj:
        obj.assign({"pose": np.ones(7), "name": "bcd", "rec": np.ones(1, [("t", "<f8")])})
        assert (
            obj._words[_layout.SCHEMA_COUNTER_WORD] == 1
        )  # the one made at creation: no new schema
        obj.assign(
            {"pose": np.ones(7), "name": "b" * 500, "rec": np.ones(1, [("t", "<f8")])}
        )  # past its capacity
        assert obj._words[_layout.SCHEMA_COUNTER_WORD] == 2
        obj.unlink()


def test_a_value_flipping_between_kinds_reuses_their_schemas(shm_name: str) -> None:
    # Each flip used to publish a new schema, which every reader parsed again (3.6x the time of
    # an assign and fetch of one kind); the ids stand for their texts for ever, so they are reused.
    from shared_object import _layout

    kinds = [{"speed": 0, "pose": np.zeros(7)}, {"speed": 0.5, "pose": np.ones(7)}]
    with (
        SharedDynamicObject.create(shm_name, kinds[0]) as writer,
        SharedDynamicObject.attach(shm_name) as reader,
    ):
        for i in range(20):
            writer.assign(kinds[i % 2])
            assert same(reader.fetch(), kinds[i % 2])
        assert writer._words[_layout.SCHEMA_COUNTER_WORD] <= 3  # creation's, then one per kind
        assert len(reader._nodes) <= 3
        writer.unlink()


def test_a_writer_whose_kinds_never_repeat_keeps_a_bounded_cache(shm_name: str) -> None:
    # It kept the node of every schema it ever made: a string growing by a byte per assign, for
    # a day, was a memory leak.
    from shared_object import Tuning

    size = Tuning().schema_cache_size
    with (
        SharedDynamicObject.create(shm_name, "a") as writer,
        SharedDynamicObject.attach(shm_name) as reader,
    ):
        for n in range(101, 150):
            writer.assign("x" * n)
            assert reader.fetch() == "x" * n
        assert len(writer._nodes) <= size and len(reader._nodes) <= size
        assert len(writer._schema_ids) <= size
        writer.unlink()


@x86_lock_free_reads
def test_a_read_that_a_writer_lapped_caches_nothing_it_read(
    shm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock-free read may parse a slot's schema while a writer rewrites the header: a mixed
    text that parses, here ["float"] where the slot holds an int. That read is lapped and tried
    again, but the torn node and slot entry used to stay cached under the slot's id, which the
    kept kind soon wrote again: from then on, reads decoded the int's bytes as a float
    (5e-324), and passed every check. Nothing a read saw is cached until it proved whole."""
    with (
        SharedDynamicObject.create(shm_name, 1) as writer,
        SharedDynamicObject.attach(shm_name) as reader,
    ):
        loads = _schema.loads
        torn: list[bool] = []

        def loads_while_a_writer_laps(raw: bytes, name: str) -> Any:
            if torn:
                return loads(raw, name)
            torn.append(True)
            writer.assign(1).assign(1)  # the same kind: the same schema id, written again
            return ["float"]  # what a mixed text could parse as: the same size, another kind

        monkeypatch.setattr(_schema, "loads", loads_while_a_writer_laps)
        assert same(reader.fetch(), 1) and torn
        assert same(reader.fetch(), 1)
        writer.assign(2)
        assert same(reader.fetch(), 2)
        writer.unlink()


#: Values of four kinds for a writer to flip between (each a new schema in the slot it writes).
FLIPPING_KINDS = [7, "x" * 120, np.arange(300, dtype=np.int32), {"k": 1.5}]


def test_a_view_that_a_writer_changing_kinds_laps_as_it_is_set_up_is_a_lap_not_an_error(
    shm_name: str, spawn: Any
) -> None:
    # Setting up the views reads a dynamic slot's header and schema, which the writer may be
    # rewriting: that raised LayoutError ("str length 8753160913407277433 exceeds its capacity").
    with SharedDynamicObject.create(shm_name, FLIPPING_KINDS[0]) as reader:
        writer = spawn(helpers.assign_in_turn_in_child, shm_name, FLIPPING_KINDS, 3.0)
        views = 0
        while writer.is_alive() or not views:
            with reader.view() as v:
                value = v.value.copy() if isinstance(v.value, np.ndarray) else v.value
            assert v.torn or any(same(value, kind) for kind in FLIPPING_KINDS)
            views += 1
        writer.join()
        assert writer.exitcode == 0
        reader.unlink()


def test_a_view_lapped_at_every_try_of_its_set_up_holds_the_lock_for_its_block(
    shm_name: str,
) -> None:
    from shared_object import LockReentryError, Tuning

    lapped_every_try = Tuning(header_read_tries=0)  # as if writers lapped every try
    with SharedDynamicObject.create(shm_name, np.arange(4), tuning=lapped_every_try) as obj:
        with obj.view() as v:
            assert same(v.value.copy(), np.arange(4))
            with pytest.raises(
                LockReentryError
            ):  # the block holds the writer lock: as single-slot blocks do
                obj.assign(1)
        assert not v.torn
        obj.assign(np.arange(5))  # released at the end of the block
        assert same(obj.fetch(), np.arange(5))
        assert obj.kind == "ndarray[int64, (5,)]"  # kind too takes the lock then
        obj.unlink()


def test_kind_and_repr_under_a_writer_changing_kinds_read_as_fetch_reads(
    shm_name: str, spawn: Any
) -> None:
    # They read the current slot's header unchecked: a lap raised LayoutError or ValueError, or
    # described a torn header, and cached it for the reads that followed.
    described = {_codecs.build(_schema.schema_of(k, 100)).describe() for k in FLIPPING_KINDS}
    with SharedDynamicObject.create(shm_name, FLIPPING_KINDS[0]) as reader:
        writer = spawn(helpers.assign_in_turn_in_child, shm_name, FLIPPING_KINDS, 3.0)
        reads = 0
        while writer.is_alive() or not reads:
            assert reader.kind in described
            assert "unreadable" not in repr(reader)
            reads += 1
        writer.join()
        assert writer.exitcode == 0
        assert any(same(reader.fetch(), kind) for kind in FLIPPING_KINDS)
        reader.unlink()


def test_strings_grow_without_limit(shm_name: str) -> None:
    with SharedDynamicObject.create(shm_name, "a", init_size=4) as obj:
        obj.assign("b" * 10_000)
        assert obj.fetch() == "b" * 10_000
        obj.assign("c")
        assert obj.fetch() == "c"


def test_unsupported_value_keeps_the_stored_one(shm_name: str) -> None:
    with SharedDynamicObject.create(shm_name, {"k": 1}) as obj:
        with pytest.raises(UnsupportedTypeError):
            obj.assign({"k": object()})
        assert obj.fetch() == {"k": 1}


def test_fetch_fn_and_out_on_dynamic(shm_name: str) -> None:
    with SharedDynamicObject.create(shm_name, np.ones((3, 3))) as obj:
        assert obj.fetch(lambda x: x.sum()) == 9
        out = np.empty((3, 3))
        obj.fetch(out=out)
        assert out.sum() == 9


def test_dynamic_and_fixed_do_not_mix(shm_name: str) -> None:
    SharedDynamicObject.create(shm_name, 1).close()
    with pytest.raises(TypeError, match="SharedDynamicObject"):
        SharedObject.attach(shm_name)


def test_fn_and_out_after_another_handle_grew_the_segment(shm_name: str) -> None:
    """A reader whose mapping predates the growth must follow it in every read path."""
    with (
        SharedDynamicObject.create(shm_name, np.zeros(10)) as writer,
        SharedDynamicObject.attach(shm_name) as reader,
    ):
        assert reader.fetch(lambda x: x.sum()) == 0
        writer.assign(np.ones(1_000_000))  # relocates the slot past the reader's mapping
        assert reader.fetch(lambda x: x.sum()) == 1_000_000
        writer.assign(np.full(3_000_000, 2.0))
        out = np.empty(3_000_000)
        assert reader.fetch(out=out) is out and out[0] == 2.0
        writer.assign(np.full(5_000_000, 3.0))
        with reader.view() as v:
            assert v.value[0] == 3.0


# -- any sequence of values: what every handle reads, and where the slots lie ---------------------
_sizes = st.integers(0, 300_000)
_values = st.one_of(
    _sizes.map(lambda n: np.full(n, n % 251, np.uint8)),
    st.tuples(_sizes, _sizes).map(
        lambda ab: {"a": np.full(ab[0], 1, np.uint8), "b": np.full(ab[1] // 8, 2.0)}
    ),
    st.text(max_size=50),
    st.integers(-5, 5),
    st.floats(allow_nan=False),
    st.integers(-5, 5).map(np.int32),
)


def _slot_places(obj: SharedDynamicObject) -> list[tuple[int, int]]:
    from shared_object import _layout

    return [
        _layout.SLOT_ENTRY.unpack_from(obj._buf, _layout.SLOT_TABLE_OFFSET + 16 * i) for i in (0, 1)
    ]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=st.lists(_values, min_size=1, max_size=12))
def test_any_sequence_of_values_reads_back_and_the_slots_never_overlap(sequence: list[Any]) -> None:
    """Slots move into old places now (the lowest that leaves the current slot alone): whatever
    the sizes and kinds, every handle reads each value back, the two slots never overlap, and
    both lie inside the file."""
    from shared_object.testing import unique_name

    name = unique_name("so-hyp-dyn")
    writer = SharedDynamicObject.create(name, 0)
    reader = SharedDynamicObject.attach(name)
    try:
        for value in sequence:
            writer.assign(value)
            assert same(reader.fetch(), value)
            (o0, c0), (o1, c1) = _slot_places(writer)
            assert o0 + c0 <= o1 or o1 + c1 <= o0, f"slots overlap: {o0}+{c0}, {o1}+{c1}"
            assert max(o0 + c0, o1 + c1) <= os.fstat(writer._segment.fd).st_size
    finally:
        reader.close()
        writer.unlink()
        writer.close()
