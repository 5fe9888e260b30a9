"""SharedDynamicObject: the value may change type, size, dtype, shape or structure."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

from shared_object import SharedDynamicObject, SharedObject, UnsupportedTypeError, _segment


def test_changes_kind_and_size_and_other_handles_follow(shm_name: str) -> None:
    with SharedDynamicObject.create(shm_name, 1) as writer, SharedDynamicObject.attach(shm_name) as reader:
        sequence = [
            "text", np.zeros((2, 3)), np.ones((640, 480, 3), np.uint8), {"a": [1, 2], "b": np.arange(5)},
            "x" * 100_000, None, 3.5, np.ones((10,), np.float32), (1, (2, (3,))),
        ]
        for value in sequence:
            writer.assign(value)
            got = reader.fetch()
            if isinstance(value, np.ndarray):
                assert got.dtype == value.dtype and np.array_equal(got, value)
            elif isinstance(value, dict):
                assert got["a"] == [1, 2] and np.array_equal(got["b"], value["b"])
            else:
                assert got == value
            assert reader.kind == writer.kind


def test_growth_keeps_earlier_handles_valid(shm_name: str) -> None:
    with SharedDynamicObject.create(shm_name, np.zeros(10)) as writer:
        reader = SharedDynamicObject.attach(shm_name)
        for size in (10, 1000, 100_000, 10, 2_000_000):
            writer.assign(np.full(size, float(size)))
            got = reader.fetch()
            assert got.shape == (size,) and got[0] == size
        reader.close()


def test_a_value_that_grows_in_steps_takes_memory_for_its_last_size_only(shm_name: str) -> None:
    # A slot that outgrows its place moves to the end of the file (readers may still be reading
    # the old place). The old places used to keep their memory: a 20 MiB array grown 1 MiB at a
    # time took 126 MiB of /dev/shm, so it failed in a container's default 64 MiB.
    mib = 2**20
    path = f"{_segment.SHM_DIR}/{shm_name}"
    with SharedDynamicObject.create(shm_name, np.zeros(mib, np.uint8)) as writer, \
            SharedDynamicObject.attach(shm_name) as reader:
        for size in range(1, 21):
            writer.assign(np.full(size * mib, size, np.uint8))
            got = reader.fetch()
            assert got.shape == (size * mib,) and got[0] == got[-1] == size
        used = os.stat(path).st_blocks * 512
        assert os.stat(path).st_size > 100 * mib  # it did move, again and again
        # two slots of at most 1.5x the value each (a slot grows by half its size at least)
        assert used <= 2 * 1.5 * 20 * mib + mib, f"{used / mib:.1f} MiB in /dev/shm for a 20 MiB value"
        writer.assign(np.zeros(3))  # both slots keep working
        assert reader.fetch().shape == (3,)


def test_a_value_grown_in_steps_fits_in_a_containers_default_shm(small_shm: Callable[[str], str]) -> None:
    """In a 64 MiB /dev/shm (Docker's default) a value grown 1 MiB at a time used to fail at 13 MiB."""
    code = (
        "import numpy as np\n"
        "from shared_object import SharedDynamicObject, OutOfSharedMemoryError\n"
        "mib = 2**20\n"
        "d = SharedDynamicObject.create('grow', np.zeros(mib, np.uint8))\n"
        "reader = SharedDynamicObject.attach('grow')\n"
        "for size in range(1, 29):\n"
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
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "SHARED_OBJECT_DIR": small_shm("64m")})
    assert result.returncode == 0, result.stderr
    assert "REACHED 28" in result.stdout
    assert "REFUSED" in result.stdout and "shm_size" in result.stdout  # 2 x 40 MiB cannot fit: a clear error
    assert "KEPT 28 28 28" in result.stdout and "THEN small" in result.stdout  # and the stored value survived it


FAILED_MOVE = """
import os, numpy as np
from shared_object import SharedDynamicObject, OutOfSharedMemoryError
directory = os.environ['SHARED_OBJECT_DIR']
filler = os.open(os.path.join(directory, 'filler'), os.O_RDWR | os.O_CREAT)
def fill():  # another program takes every free page
    vfs = os.statvfs(directory)
    os.posix_fallocate(filler, os.fstat(filler).st_size, vfs.f_bavail * vfs.f_frsize)
d = SharedDynamicObject.create('grow', FIRST)
for value in BEFORE:
    d.assign(value)
fill()
try:
    d.assign(TOO_BIG)  # the slot gives its old place's pages back, then cannot move
except OutOfSharedMemoryError:
    print('MOVE REFUSED')
fill()  # and the other program takes those pages too
try:
    d.assign(FITS)  # a value that fits the slot's old place
except OutOfSharedMemoryError:
    print('REUSE REFUSED')
print('KEPT', d.fetch().sum())
os.ftruncate(filler, 0)
d.assign(FITS)
print('THEN', d.fetch().sum())
"""


@pytest.mark.parametrize(("size", "first", "before", "too_big", "fits", "sums"), [
    # a page-aligned place (64 KiB or more), then a new kind there
    ("16m", "np.ones(4 * 2**20, np.uint8)", "[np.ones(6 * 2**20, np.uint8)]", "np.ones(8 * 2**20, np.uint8)",
     "np.ones((2, 2**20), np.uint8)", (6 * 2**20, 2 * 2**20)),
    # a place that does not start on a page keeps its first page (and header), then the same kind
    ("1m", "np.ones(7000)", "[]", "np.ones(20000)", "np.ones(7000)", (7000.0, 7000.0)),
], ids=["new kind in an aligned place", "same kind in an unaligned place"])
def test_a_slot_whose_move_failed_is_reserved_again_before_reuse(  # noqa: PLR0913 - one row of the table above
    small_shm: Callable[[str], str], size: str, first: str, before: str, too_big: str, fits: str,
    sums: tuple[float, float],
) -> None:
    """A slot gives its old place's pages back before it moves. When the move then fails (no
    room), the slot stays in its old place without those pages; if another program takes the
    memory meanwhile, the next value written there must fail with an error, not kill the writer
    with SIGBUS (both cases did)."""
    code = FAILED_MOVE.replace("FIRST", first).replace("BEFORE", before).replace("TOO_BIG", too_big)
    code = code.replace("FITS", fits)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "SHARED_OBJECT_DIR": small_shm(size)})
    assert result.returncode == 0, f"exit {result.returncode} (-7: SIGBUS): {result.stderr}"
    assert result.stdout.splitlines() == ["MOVE REFUSED", "REUSE REFUSED", f"KEPT {sums[0]}", f"THEN {sums[1]}"]


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
    with SharedDynamicObject.create(shm_name, np.zeros(10)) as writer, SharedDynamicObject.attach(shm_name) as reader:
        assert reader.fetch(lambda x: x.sum()) == 0
        writer.assign(np.ones(1_000_000))  # relocates the slot past the reader's mapping
        assert reader.fetch(lambda x: x.sum()) == 1_000_000
        writer.assign(np.full(3_000_000, 2.0))
        out = np.empty(3_000_000)
        assert reader.fetch(out=out) is out and out[0] == 2.0
        writer.assign(np.full(5_000_000, 3.0))
        with reader.view() as v:
            assert v.value[0] == 3.0
