"""Segments: files in /dev/shm, opened with ``os.open`` and mapped with ``mmap``.

We never go through ``multiprocessing.shared_memory``: its resource tracker registers a segment
in every process that merely attaches (Python < 3.13) and unlinks it when that process exits,
under every other user's feet. Here a segment disappears only when someone calls ``unlink``.

Creation is atomic: the creator fills a private temporary file (``.shared_object-tmp-...``),
then publishes it under its name with ``link``, which fails if the name exists. So nobody can
attach to a half-initialized segment, and two creators racing for one name cannot both win.

Mappings are made with the C library's ``mmap`` (through ctypes), not Python's ``mmap`` module,
for one reason: the address. A segment of 2 MiB or more is mapped at a multiple of 2 MiB, so
that where the file is backed by 2 MiB huge pages the kernel maps each with one page-table entry.
The creator of a segment of ``HUGE_PAGE_MIN_BYTES`` or more asks for those pages with
``madvise(MADV_COLLAPSE)`` (Linux 6.1+; best effort, ignored where refused). Why: /dev/shm hands
out 4 KiB pages (its ``huge=`` mount option is usually ``never``), while numpy backs private
arrays of 4 MiB or more with transparent huge pages; copying a 100 MiB value through 25,600
TLB entries instead of 50 measurably slows every fetch and assign of large arrays. The price is
paid once, at creation. A mapping is unmapped when the last view into
it dies, never before (see ``_map``), so a caller's view can never dangle.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import mmap
import os
import resource
import secrets
import stat
import time
import weakref
from typing import Final

from ._errors import (
    LayoutError,
    OutOfSharedMemoryError,
    SegmentExistsError,
    SegmentNotFoundError,
    SegmentPermissionError,
    TooManyHandlesError,
)
from ._flock import held_by_anyone, hold_liveness
from ._names import SHM_DIR, TEMP_PREFIX, segment_path, validate_name

#: Mappings of at least this size start at a multiple of it: the x86-64 and aarch64 (4 KiB
#: base pages) huge page size. Elsewhere the alignment is merely harmless.
HUGE_PAGE: Final = 2 * 1024 * 1024
#: The creator asks for huge pages for segments at least this large: below it the TLB is not
#: what a copy waits for, and the request would only slow creation down.
HUGE_PAGE_MIN_BYTES: Final = 8 * 1024 * 1024
_MADV_COLLAPSE: Final = 25  # linux/mman.h (asm-generic); Python's mmap module lacks it before 3.13
_MAP_FIXED: Final = 0x10
_MAP_NORESERVE: Final = 0x4000

IPC_HINT: Final = (
    "Processes in different containers see each other's segments only when they share an IPC "
    'namespace (compose: `ipc: shareable` on one service that only holds it, `ipc: "service:<it>"` '
    "on producer and consumer; docker run: --ipc container:<it>) or bind-mount the same /dev/shm. "
    "Not the producer's own namespace: a restarted producer gets a new, empty /dev/shm."
)
SHM_SIZE_HINT: Final = (
    "In a container, /dev/shm is 64 MiB unless the owner of its IPC namespace sets `shm_size` "
    "(compose `shm_size: 512m`, docker run --shm-size 512m)."
)


def _temp_path(tag: str) -> str:
    """A fresh private file name in SHM_DIR, which `gc` recognizes by TEMP_PREFIX."""
    return os.path.join(SHM_DIR, f"{TEMP_PREFIX}{tag}-{os.getpid()}-{secrets.token_hex(4)}")


class Segment:
    """An open, mapped segment file. The mapping covers the whole file and can be refreshed."""

    __slots__ = ("_retired", "address", "buf", "fd", "name", "path")

    def __init__(self, name: str, path: str, fd: int) -> None:
        self.name = name
        self.path = path
        self.fd = fd
        size = os.fstat(fd).st_size
        if size == 0:  # a mapping cannot be empty; say what it means for us
            msg = f"segment {name!r} is truncated: 0 bytes"
            raise LayoutError(msg)
        #: The whole file, mapped shared and writable (format "B"), and where it starts.
        self.buf, self.address = _map(fd, size)
        # Earlier mappings (before the file grew), kept until close: see refresh.
        self._retired: list[memoryview] = []

    # -- creation and opening -------------------------------------------------------------
    @classmethod
    def create_private(cls, name: str, size: int, mode: int) -> Segment:
        """Make a fully reserved, not yet visible segment file; ``publish`` makes it visible."""
        validate_name(name)
        path = _temp_path(name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileNotFoundError as exc:
            msg = f"the shared-memory directory {SHM_DIR} does not exist"
            raise SegmentNotFoundError(msg, name=name) from exc
        except OSError as exc:
            raise _open_error(exc, name) from exc
        try:
            os.fchmod(fd, mode)  # the umask must not narrow the mode asked for
            hold_liveness(fd)  # a private file: nobody else can hold it yet
            reserve(fd, 0, size, name)
            segment = cls(name, path, fd)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        segment.use_huge_pages(0, size)
        return segment

    def publish(self) -> None:
        """Give the private file its name; SegmentExistsError if the name is taken."""
        final = segment_path(self.name)
        try:
            os.link(self.path, final)
        except FileExistsError as exc:
            msg = (
                f"a segment named {self.name!r} already exists in "
                f"{SHM_DIR}{_who_holds(final, self.name)}"
            )
            raise SegmentExistsError(msg, name=self.name) from exc
        finally:
            os.unlink(self.path)
        self.path = final

    def discard(self) -> None:
        """Close and delete a private segment that was never published."""
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    @classmethod
    def open(cls, name: str) -> Segment:
        """Open and map an existing segment by name."""
        path = segment_path(name)
        for _ in range(1000):  # retried only while `gc` is removing this very name
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError as exc:
                msg = f"no shared object named {name!r} in {SHM_DIR}. {IPC_HINT}"
                raise SegmentNotFoundError(msg, name=name) from exc
            except PermissionError as exc:
                msg = (
                    f"segment {name!r} exists but this process may not open it ({_owner(path)}); "
                    f"{_mode_hint()}"
                )
                raise SegmentPermissionError(msg, name=name) from exc
            except OSError as exc:
                raise _open_error(exc, name) from exc
            if hold_liveness(fd) and _same_file(path, fd):
                break
            os.close(fd)  # gc held it, or removed the name after we opened it: look again
            time.sleep(0.001)
        else:
            msg = f"segment {name!r} kept being removed while attaching"
            raise SegmentNotFoundError(msg, name=name)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            msg = f"{path} is not a regular file"
            raise SegmentNotFoundError(msg, name=name)
        try:
            return cls(name, path, fd)
        except BaseException:
            os.close(fd)
            raise

    def is_named(self) -> bool:
        """Does the segment's name (still) lead to this file? False once unlinked or replaced."""
        return _same_file(segment_path(self.name), self.fd)

    # -- size ------------------------------------------------------------------------------
    def file_size(self) -> int:
        return os.fstat(self.fd).st_size

    def refresh(self) -> bool:
        """Map the file again if it grew since it was mapped; True if the mapping changed.

        The old mapping is kept (not unmapped) until ``close``: addresses taken from it, such as
        the writer mutex's, stay valid, and views handed out earlier never dangle. It costs
        address space only; the pages are the file's, shared with the new mapping.
        """
        size = self.file_size()
        if size <= len(self.buf):
            return False
        self._retired.append(self.buf)
        self.buf, self.address = _map(self.fd, size)
        return True

    def grow(self, size: int) -> None:
        """Grow the file to ``size`` bytes, reserving the memory now, and remap."""
        current = self.file_size()
        if size > current:
            reserve(self.fd, current, size - current, self.name)
        self.refresh()
        if size > current:
            self.use_huge_pages(current, size - current)

    def use_huge_pages(self, offset: int, length: int) -> bool:
        """Ask the kernel to back bytes [offset, offset + length) with huge pages; True if it did.

        Best effort: kernels before 6.1, or a /dev/shm mounted ``huge=deny``, refuse, and the
        segment works the same on 4 KiB pages. Only whole, aligned 2 MiB pieces are collapsed.
        """
        return length >= HUGE_PAGE_MIN_BYTES and _collapse(self.address, offset, length)

    # -- teardown --------------------------------------------------------------------------
    def close(self) -> None:
        """Unmap and close the file descriptor; the segment itself stays."""
        if self.fd < 0:
            return
        # Dropping our references unmaps each mapping now, or when the last view into it dies.
        self.buf = _CLOSED
        self._retired.clear()
        os.close(self.fd)
        self.fd = -1


class _Mman:
    """The C library's mmap, munmap and madvise, resolved once."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        size_t, ptr, cint = ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int
        self.mmap = libc.mmap
        self.mmap.restype = ptr
        self.mmap.argtypes = [ptr, size_t, cint, cint, cint, ctypes.c_long]
        self.munmap = libc.munmap
        self.munmap.argtypes = [ptr, size_t]
        self.munmap.restype = cint
        self.madvise = libc.madvise
        self.madvise.argtypes = [ptr, size_t, cint]
        self.madvise.restype = cint
        self.failed = ctypes.c_void_p(-1).value  # MAP_FAILED


@functools.cache
def _mman() -> _Mman:
    return _Mman()


def _map(fd: int, size: int) -> tuple[memoryview, int]:
    """Map the whole file shared and writable; the view, and the address the mapping starts at.

    A file of ``HUGE_PAGE`` bytes or more is mapped at a multiple of ``HUGE_PAGE`` (reserve that
    much more address space, map the file over its aligned part, give back the rest).

    Lifetime: the memory is unmapped by a finalizer of the ctypes object that describes it, which
    every view (the returned memoryview, numpy arrays made from it, their slices) keeps alive. So
    the mapping goes when the last view does: never under a caller's feet, and without the
    ``BufferError`` that ``mmap.close`` raises while views exist.
    """
    lib = _mman()
    length = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
    slack = HUGE_PAGE if size >= HUGE_PAGE else 0
    reserved = lib.mmap(
        None, length + slack, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0
    )
    if reserved in (None, lib.failed):
        raise _errno_error("mmap (reserving address space)")
    address = -(-reserved // HUGE_PAGE) * HUGE_PAGE if slack else reserved
    mapped = lib.mmap(
        address, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | _MAP_FIXED, fd, 0
    )
    if mapped != address:
        error = _errno_error("mmap")
        lib.munmap(reserved, length + slack)
        raise error
    if address > reserved:
        lib.munmap(reserved, address - reserved)
    if reserved + slack > address:
        lib.munmap(address + length, reserved + slack - address)
    region = (ctypes.c_ubyte * size).from_address(address)
    finalizer = weakref.finalize(region, lib.munmap, address, length)
    finalizer.atexit = False  # at exit the process unmaps everything anyway, after its last use
    # Cast from ctypes' "<B" to the plain "B" that a later cast("Q") of the header needs.
    return memoryview(region).cast("B"), address


def _collapse(address: int, offset: int, length: int) -> bool:
    """MADV_COLLAPSE the whole, aligned 2 MiB pieces of bytes [offset, offset + length) of a
    mapping.
    """
    start = -(-offset // HUGE_PAGE) * HUGE_PAGE
    end = (offset + length) // HUGE_PAGE * HUGE_PAGE
    return end > start and _mman().madvise(address + start, end - start, _MADV_COLLAPSE) == 0


def huge_pages_available() -> bool:
    """Whether this kernel backs a file in SHM_DIR with huge pages when asked: a 2 MiB probe.

    False on kernels before 6.1, with SHM_DIR mounted ``huge=deny``, or where a seccomp profile
    refuses the madvise; and under qemu-user emulation, whose madvise succeeds without doing
    anything, so the probe asks the kernel's page tables (smaps) whether it took effect.
    Raises OSError if the probe file cannot be made (SHM_DIR full, say).
    """
    path = _temp_path("probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.unlink(path)
        os.posix_fallocate(fd, 0, HUGE_PAGE)
        _, address = _map(fd, HUGE_PAGE)  # unmapped when this frame drops the view
        if not _collapse(address, 0, HUGE_PAGE):
            return False
        mapped_kb = _huge_mapped_kb(address)
        return mapped_kb is None or mapped_kb >= HUGE_PAGE // 1024
    finally:
        os.close(fd)


def _huge_mapped_kb(address: int) -> int | None:
    """KiB of the mapping at ``address`` backed by huge pages (ShmemPmdMapped); None: unknown."""
    try:
        with open("/proc/self/smaps") as smaps:
            inside = False
            for line in smaps:
                if not line.split(maxsplit=1)[0].endswith(
                    ":"
                ):  # a mapping's first line: start-end perms ...
                    inside = line.startswith(f"{address:x}-")
                elif inside and line.startswith("ShmemPmdMapped:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _open_error(exc: OSError, name: str) -> OSError:
    """The error for a failed open of segment ``name``: the library's when it can say more."""
    if exc.errno not in (errno.EMFILE, errno.ENFILE):
        return exc
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    whose = "this process" if exc.errno == errno.EMFILE else "the system"
    msg = (
        f"cannot open segment {name!r}: {whose} has too many open files (this process may have "
        f"{soft}). "
        "Every open SharedObject handle keeps one file descriptor until close(): close the "
        "handles you no "
        "longer use (or share one handle per segment in a process), or raise the limit (`ulimit "
        "-n`; "
        "compose: `ulimits: {nofile: 65536}`)"
    )
    return TooManyHandlesError(exc.errno, msg, name=name)


def _errno_error(call: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, f"{call}: {os.strerror(code)}")


_CLOSED: Final = memoryview(b"")


def reserve(fd: int, offset: int, length: int, name: str) -> None:
    """Allocate the pages now, so a full /dev/shm fails here and not with SIGBUS later."""
    try:
        os.posix_fallocate(fd, offset, length)
    except (OSError, OverflowError) as exc:  # OverflowError: past what a file offset holds
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EFBIG):
            raise
        vfs = os.statvfs(SHM_DIR)
        free, total = vfs.f_bavail * vfs.f_frsize, vfs.f_blocks * vfs.f_frsize
        msg = (
            f"no room in {SHM_DIR} for segment {name!r}: asked for {_fmt(length)}, {_fmt(free)} "
            f"free of {_fmt(total)}. {SHM_SIZE_HINT}"
        )
        raise OutOfSharedMemoryError(errno.ENOSPC, msg, name=name) from exc


def unlink(name: str, identity: tuple[int, int] | None = None) -> None:
    """Remove segment ``name`` from /dev/shm; handles keep their mapping until they close.

    With ``identity`` (the ``(st_dev, st_ino)`` of the file a handle mapped), remove the name
    only while it still names that file. A producer that restarted has created a new segment
    under the same name, and an old consumer's ``unlink()`` on its way out must not delete the
    new one from under every later consumer. (Between the check and the removal another process
    could still replace the file: no system call removes a name only if it names a given inode.)
    """
    path = segment_path(name)
    try:
        st = os.stat(path) if identity is not None else None
        if st is None or (st.st_dev, st.st_ino) == identity:
            os.unlink(path)
            return
    except FileNotFoundError as exc:
        msg = f"no shared object named {name!r} in {SHM_DIR}"
        raise SegmentNotFoundError(msg, name=name) from exc
    msg = (
        f"{name!r} in {SHM_DIR} now names another segment, created after this handle attached (a "
        "restarted producer?); left it in place"
    )
    raise SegmentNotFoundError(msg, name=name)


def _who_holds(path: str, name: str) -> str:
    """For the error of a name that is taken: is it in use, or left behind by a process gone?"""
    try:
        held = held_by_anyone(path)
    except OSError:
        return ""  # gone meanwhile, or not ours to open: nothing more to say
    if held:
        return ", in use by a live handle"
    return (
        " and no process holds it (left by a run that ended without unlink()?): attach to it, or "
        f"remove it with `shared-object rm {name}` (`shared-object gc` removes every segment no "
        "process holds)"
    )


def _same_file(path: str, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _owner(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "owner unknown"
    mode = stat.S_IMODE(st.st_mode)
    return (
        f"owner uid {st.st_uid}, gid {st.st_gid}, mode {mode:#o}; this process is uid {os.getuid()}"
    )


def _mode_hint() -> str:
    return (
        "the creator must pass mode=0o666 (any user) or mode=0o660 with a group both processes "
        "share (in compose, run both services with the same `user:`)"
    )


def _fmt(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


__all__ = [
    "IPC_HINT",
    "SHM_DIR",
    "SHM_SIZE_HINT",
    "TEMP_PREFIX",
    "Segment",
    "huge_pages_available",
    "reserve",
    "segment_path",
    "unlink",
    "validate_name",
]
