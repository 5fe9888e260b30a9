"""Segment files: names, atomic creation, permissions, running out of /dev/shm."""

from __future__ import annotations

import gc
import glob
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from shared_object import (
    InvalidNameError,
    OutOfSharedMemoryError,
    SegmentExistsError,
    SegmentNotFoundError,
    SegmentPermissionError,
    SharedDynamicObject,
    SharedObject,
    TypeMismatchError,
    _segment,
)


@pytest.mark.parametrize(
    "name",
    ["", "a/b", "../etc", "..", ".hidden", "-flag", "x\0y", "sp ace", "a" * 201, "ü", 5, None],
)
def test_hostile_names_are_refused(name: object) -> None:
    with pytest.raises(InvalidNameError, match="segment name"):
        SharedObject.create(name, 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidNameError):
        SharedObject.attach(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a", "frame_0", "robot.pose-left", "A" * 200])
def test_reasonable_names_are_accepted(name: str) -> None:
    assert _segment.validate_name(name) == name


def test_create_fails_if_the_name_exists_and_leaves_no_temporary(shm_name: str) -> None:
    with (
        SharedObject.create(shm_name, 1),
        pytest.raises(SegmentExistsError, match="already exists"),
    ):
        SharedObject.create(shm_name, 2)
    assert not [
        f for f in os.listdir(_segment.SHM_DIR) if f.startswith(_segment.TEMP_PREFIX + shm_name)
    ]


def test_create_over_a_segment_nobody_holds_says_how_to_remove_it(shm_name: str) -> None:
    # The first thing a user meets after a crash: the name is taken by the last run's segment.
    SharedObject.create(shm_name, 1).close()  # closed without unlink(): nobody holds it now
    with pytest.raises(
        SegmentExistsError, match=f"no process holds it.*shared-object rm {shm_name}"
    ):
        SharedObject.create(shm_name, 2)
    with (
        SharedObject.attach(shm_name),
        pytest.raises(SegmentExistsError, match="in use by a live handle"),
    ):
        SharedObject.create(shm_name, 2)


def test_the_constructor_says_why_an_existing_segment_has_another_kind(shm_name: str) -> None:
    SharedObject.create(shm_name, np.zeros(3)).close()  # the last run's frame size
    with pytest.raises(
        TypeMismatchError, match=r"offered ndarray\[float64, \(4,\)\]\. .*attaches to the segment"
    ):
        SharedObject(shm_name, data=np.zeros(4))
    with SharedObject.attach(shm_name) as obj:
        np.testing.assert_array_equal(obj.fetch(), np.zeros(3))  # untouched


def test_attach_missing_explains_ipc_namespaces(shm_name: str) -> None:
    with pytest.raises(SegmentNotFoundError, match="share an IPC namespace") as info:
        SharedObject.attach(shm_name, timeout=0.2)
    assert "after waiting 0.2 s" in str(info.value)


def test_attach_waits_for_the_producer(shm_name: str) -> None:
    code = f"import time; from shared_object import SharedObject; time.sleep(0.5); SharedObject.create({shm_name!r}, 42).close()"
    producer = subprocess.Popen([sys.executable, "-c", code])
    try:
        with SharedObject.attach(shm_name, timeout=30) as obj:
            assert obj.fetch() == 42
    finally:
        producer.wait(30)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o666])
def test_mode_is_applied_despite_umask(shm_name: str, mode: int) -> None:
    old = os.umask(0o077)
    try:
        SharedObject.create(shm_name, 1, mode=mode).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(os.path.join(_segment.SHM_DIR, shm_name)).st_mode) == mode


def test_bad_mode_is_refused(shm_name: str) -> None:
    with pytest.raises(ValueError, match="permission bits"):
        SharedObject.create(shm_name, 1, mode=0o1777)


def _as_other_user(action: str, name: str) -> str:
    """Run ``action`` on segment ``name`` in a forked child that switched to UID/GID 65534 (nobody).

    Forked rather than exec'd: the child keeps this interpreter, which another user may not be
    allowed to execute from root's home.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            try:
                obj = SharedObject.attach(name)
                value = obj.fetch()
                if action == "write":
                    obj.assign(value + 1)
                result = f"OK {value}"
            except SegmentPermissionError as exc:
                result = f"DENIED {exc}"
            os.write(write_end, result.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as f:
        return f.read().decode()


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another UID needs root")


@needs_root
def test_other_uid_is_refused_by_default_mode(shm_name: str) -> None:
    SharedObject.create(shm_name, 5).close()
    out = _as_other_user("read", shm_name)
    assert out.startswith("DENIED"), out
    assert "mode=0o666" in out and "uid 0" in out


@needs_root
def test_other_uid_reads_and_writes_with_a_wide_mode(shm_name: str) -> None:
    with SharedObject.create(shm_name, 5, mode=0o666) as obj:
        assert _as_other_user("write", shm_name) == "OK 5"
        assert obj.fetch() == 6


def test_permission_error_is_the_library_error(shm_name: str) -> None:
    assert issubclass(SegmentPermissionError, PermissionError)


def test_running_out_of_file_descriptors_says_that_each_handle_keeps_one(shm_name: str) -> None:
    # A process with hundreds of objects (or one leaking handles) hit "[Errno 24] Too many open
    # files" from os.open, outside the hierarchy and without saying what holds the files.
    code = (
        "import resource, sys\n"
        "from shared_object import SharedObject, TooManyHandlesError\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
        "name = sys.argv[1]\n"
        "first = SharedObject.create(name, 1)\n"
        "handles = []\n"
        "for verb in ('attach', 'create'):\n"
        "    try:\n"
        "        for i in range(100):\n"
        "            handles.append(SharedObject.attach(name) if verb == 'attach' else SharedObject.create(f'{name}-{i}', 1))\n"
        "    except TooManyHandlesError as e:\n"
        "        print(verb, e.errno, e)\n"
        "    for h in handles:\n"
        "        h.close()\n"
        "    handles.clear()\n"
        "print('still works', SharedObject.attach(name).fetch())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, shm_name], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:2]] == [["attach", "24"], ["create", "24"]]
    for line in lines[:2]:
        assert (
            "too many open files (this process may have 64)" in line
            and "keeps one file descriptor" in line
        )
        assert "ulimit -n" in line
    assert lines[2] == "still works 1"
    assert not glob.glob(
        os.path.join(_segment.SHM_DIR, ".shared_object-tmp-" + shm_name + "*")
    )  # nothing half-made left


def test_full_shm_fails_at_creation_not_with_sigbus(
    in_small_shm: Callable[[str, str], Any],
) -> None:
    """A 4 MiB tmpfs stands in for a container's small /dev/shm."""
    code = (
        "import numpy as np\n"
        "from shared_object import SharedObject, SharedDynamicObject, OutOfSharedMemoryError\n"
        "try:\n    SharedObject.create('big', np.zeros((8, 1024, 1024), np.uint8))\n"
        "except OutOfSharedMemoryError as e:\n    print('REFUSED', e)\n"
        "d = SharedDynamicObject.create('grow', np.ones(1000))\n"
        "try:\n    d.assign(np.zeros((4, 1024, 1024), np.uint8))\n"
        "except OutOfSharedMemoryError as e:\n    print('GROWTH REFUSED')\n"
        "print('KEPT', d.fetch().sum())\n"
    )
    result = in_small_shm("4m", code)
    assert result.returncode == 0, result.stderr
    assert "REFUSED" in result.stdout and "no room" in result.stdout and "shm_size" in result.stdout
    assert "asked for 16.0 MiB" in result.stdout
    assert "GROWTH REFUSED" in result.stdout and "KEPT 1000.0" in result.stdout


def test_a_size_past_what_a_file_can_hold_is_no_room_not_a_bare_overflow(shm_name: str) -> None:
    # posix_fallocate raised OverflowError ("Python int too large to convert to C long")
    for init_size in (2**63, 2**70):
        with pytest.raises(OutOfSharedMemoryError, match=r"no room in /dev/shm .* asked for"):
            SharedObject.create(shm_name, "abc", init_size=init_size)
        assert not os.path.exists(_segment.segment_path(shm_name))
    with SharedDynamicObject(shm_name, data="abc") as obj:
        with pytest.raises(OutOfSharedMemoryError, match="no room"):
            obj.assign(np.broadcast_to(np.zeros(1, np.uint8), (2**62,)))
        assert obj.fetch() == "abc"
        obj.unlink()


# -- mappings: alignment, lifetime, huge pages ---------------------------------------------------


def _mappings_of(name: str) -> list[dict[str, int]]:
    """This process's mappings of segment ``name`` (also under its temporary name), from smaps."""
    regions: list[dict[str, int]] = []
    current: dict[str, int] | None = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if fields[0].endswith(":"):  # a field of the current region
                if current is not None and fields[0] == "ShmemPmdMapped:":
                    current["pmd_kb"] = int(fields[1])
                continue
            path = (
                fields[5] if len(fields) >= 6 else ""
            )  # a region's first line: range perms offset dev inode path
            current = None
            if path.endswith(f"/{name}") or f"-tmp-{name}-" in path:
                current = {"start": int(fields[0].split("-")[0], 16), "pmd_kb": 0}
                regions.append(current)
    return regions


def test_big_segments_are_mapped_at_a_huge_page_boundary(shm_name: str) -> None:
    with SharedObject.create(shm_name, np.zeros(3 * 2**20, np.uint8)) as obj:
        assert obj._segment.address % _segment.HUGE_PAGE == 0
        with SharedObject.attach(shm_name) as other:
            assert other._segment.address % _segment.HUGE_PAGE == 0
        obj.unlink()


def test_a_view_outlives_close_and_the_mapping_goes_with_the_last_view(shm_name: str) -> None:
    obj = SharedObject.create(shm_name, np.arange(1000.0))
    with obj.view() as view:
        kept = view.value
    obj.unlink()
    obj.close()
    assert _mappings_of(shm_name), "the mapping went while a view into it was alive"
    assert kept[999] == 999.0  # still readable: no dangling pointer
    del kept, view
    gc.collect()
    assert not _mappings_of(shm_name), "the mapping outlived every view"


def test_closing_with_no_views_unmaps_at_once(shm_name: str) -> None:
    obj = SharedObject.create(shm_name, np.arange(1000.0))
    obj.fetch()
    assert len(_mappings_of(shm_name)) == 1
    obj.unlink()
    obj.close()
    assert not _mappings_of(shm_name)


def test_huge_pages_when_the_kernel_grants_them(shm_name: str) -> None:
    """Creation asks for huge pages for big segments; where granted, readers in another process use them.

    Kernels before 6.1 (or /dev/shm mounted huge=deny) refuse: then the object works on 4 KiB pages,
    and only the consistency of the report is checked.
    """
    frame = np.full((480, 848, 3), 1.5)  # 9.8 MB: two slots are about 20 MB
    with SharedObject.create(shm_name, frame) as obj:
        # Asked again (a no-op where granted): granted only if the kernel did it, which the probe
        # checks (qemu-user's madvise succeeds without doing anything).
        granted = (
            obj._segment.use_huge_pages(0, obj._segment.file_size())
            and _segment.huge_pages_available()
        )
        mapped_kb = sum(region["pmd_kb"] for region in _mappings_of(shm_name))
        if not granted:
            assert mapped_kb == 0
            obj.unlink()
            return
        assert mapped_kb >= 16 * 1024  # 8 of the 9 whole 2 MiB pieces at least
        code = (
            "import sys; sys.path.insert(0, 'tests'); from test_segment import _mappings_of\n"
            f"from shared_object import SharedObject\nobj = SharedObject.attach({shm_name!r})\n"
            "assert obj.fetch().sum() == 1.5 * 480 * 848 * 3\n"
            f"print(sum(r['pmd_kb'] for r in _mappings_of({shm_name!r})))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert int(result.stdout) >= 8 * 1024  # at least the slot the fetch read
        obj.unlink()


def test_small_segments_do_not_ask_for_huge_pages(shm_name: str) -> None:
    with SharedObject.create(shm_name, np.zeros(2**20, np.uint8)) as obj:
        assert not obj._segment.use_huge_pages(0, obj._segment.file_size())
        assert sum(region["pmd_kb"] for region in _mappings_of(shm_name)) == 0
        obj.unlink()


def test_the_huge_page_probe_believes_the_page_tables_not_madvise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """qemu-user's madvise returns 0 and does nothing: doctor then claimed huge pages it never got."""
    monkeypatch.setattr(
        _segment, "_collapse", lambda address, offset, length: True
    )  # madvise says yes
    monkeypatch.setattr(_segment, "_huge_mapped_kb", lambda address: 0)  # as smaps reads under qemu
    assert _segment.huge_pages_available() is False
    monkeypatch.setattr(_segment, "_huge_mapped_kb", lambda address: 2048)
    assert _segment.huge_pages_available() is True
    monkeypatch.setattr(
        _segment, "_huge_mapped_kb", lambda address: None
    )  # no smaps to read: trust madvise
    assert _segment.huge_pages_available() is True
    monkeypatch.setattr(_segment, "_collapse", lambda address, offset, length: False)
    assert _segment.huge_pages_available() is False


def test_the_huge_page_probe_leaves_nothing_behind_and_agrees_with_creation(shm_name: str) -> None:
    before = set(os.listdir(_segment.SHM_DIR))
    available = _segment.huge_pages_available()
    assert set(os.listdir(_segment.SHM_DIR)) - before == set()  # the probe file is gone
    with SharedObject.create(shm_name, np.zeros(5 * 2**20)) as obj:  # 40 MB: asks for huge pages
        mapped_kb = sum(region["pmd_kb"] for region in _mappings_of(shm_name))
        assert (mapped_kb > 0) == available, (
            mapped_kb
        )  # what creation got, as the kernel's page tables say
        obj.unlink()
