"""``shared-object doctor``: what in this environment will break shared memory, and the fix."""

from __future__ import annotations

import argparse
import json
import os
import platform
from importlib import metadata

import numpy as np

from .. import __version__, _segment
from .._errors import SharedObjectError
from .._probe import segment_names
from .._sync import LOCK_FREE_READS, libc, lock_abi, robust_locks_supported
from .segments import held_by_anyone, temp_files

#: Below this, /dev/shm is likely a container's default (64 MiB): frames of a few MB x 2 slots fill
#: it.
SMALL_SHM_BYTES = 128 * 1024 * 1024


def _shm_mount() -> dict[str, str]:
    """The mount that holds SHM_DIR, from /proc/self/mountinfo (fs type and options)."""
    best: dict[str, str] = {}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                mount_point = fields[4]
                if _segment.SHM_DIR.startswith(mount_point) and len(mount_point) >= len(
                    best.get("mount_point", "")
                ):
                    sep = fields.index("-")
                    best = {
                        "mount_point": mount_point,
                        "fs": fields[sep + 1],
                        "source": fields[sep + 2],
                        "options": fields[sep + 3],
                    }
    except (OSError, ValueError, IndexError):
        pass
    return best


def _in_container() -> bool:
    if os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv"):
        return True
    try:
        with open("/proc/1/cgroup") as f:
            return any(word in f.read() for word in ("docker", "containerd", "kubepods", "libpod"))
    except OSError:
        return False


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


Findings = list[dict[str, str]]


def _finding(found: Findings, level: str, check: str, detail: str) -> None:
    found.append({"level": level, "check": check, "detail": detail})


def _check_shm(found: Findings) -> bool:
    """The shared-memory directory: exists, writable, big enough. False if it does not exist."""
    shm = _segment.SHM_DIR
    if not os.path.isdir(shm):
        _finding(found, "error", "shm directory", f"{shm} does not exist: no shared memory here")
        return False
    if not os.access(shm, os.W_OK | os.X_OK):
        detail = f"{shm} is not writable by uid {os.getuid()}: creating objects will fail"
        _finding(found, "error", "shm directory", detail)
    else:
        _finding(found, "ok", "shm directory", f"{shm} is writable")
    vfs = os.statvfs(shm)
    total, free = vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize
    size = f"{total / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free"
    if free < 2**20:
        _finding(
            found,
            "error",
            "shm size",
            f"{size}: full; creating any object will fail ({_segment.SHM_SIZE_HINT})",
        )
    elif total <= SMALL_SHM_BYTES:
        detail = f"{size}: small (a container's default is 64 MiB). {_segment.SHM_SIZE_HINT}"
        _finding(found, "warn", "shm size", detail)
    else:
        _finding(found, "ok", "shm size", size)
    mount = _shm_mount()
    if mount:
        _finding(
            found, "ok", "shm mount", f"{mount['mount_point']}: {mount['fs']} ({mount['options']})"
        )
    return True


def _check_sharing(found: Findings) -> None:
    try:
        ipc = os.readlink("/proc/self/ns/ipc")
    except OSError:
        ipc = "unknown"
    st_dev = os.stat(_segment.SHM_DIR).st_dev
    device = f"{os.major(st_dev)}:{os.minor(st_dev)}"
    if not _in_container():
        where = "on the host (or no container detected)"
    elif (
        os.statvfs(_segment.SHM_DIR).f_blocks * os.statvfs(_segment.SHM_DIR).f_frsize == 64 * 2**20
    ):
        where = (
            "in a container with Docker's default 64 MiB /dev/shm (its own, unless others joined "
            "it)"
        )
    else:
        where = "in a container"
    _finding(
        found,
        "ok",
        "ipc namespace",
        f"{ipc}, {_segment.SHM_DIR} is device {device}, {where}. Processes see each other's "
        "segments only if they show the same IPC namespace id or the same shm device: run "
        "`shared-object doctor` in each container and compare",
    )


def _check_segments(found: Findings) -> None:
    stale, unreadable, others = 0, 0, 0
    for name in segment_names():
        path = os.path.join(_segment.SHM_DIR, name)
        if os.stat(path).st_uid != os.getuid():
            others += 1
            unreadable += not os.access(path, os.R_OK | os.W_OK)
        stale += held_by_anyone(path) is False
    if unreadable:
        _finding(
            found,
            "warn",
            "permissions",
            f"{unreadable} segment(s) owned by other users cannot be opened by uid {os.getuid()}: "
            "their creators should pass mode=0o666 (or 0o660 with a shared group)",
        )
    else:
        _finding(
            found,
            "ok",
            "permissions",
            f"every segment is usable by uid {os.getuid()} ({others} owned by others)",
        )
    temps = len(temp_files())
    if stale or temps:
        _finding(
            found,
            "warn",
            "stale segments",
            f"{stale} segment(s) and {temps} half-created file(s) no process holds: "
            "`shared-object gc` removes them",
        )
    else:
        _finding(found, "ok", "stale segments", "none")


def _check_huge_pages(found: Findings) -> None:
    """Whether big segments get huge pages here (informational: without them, big copies are a few %
    slower).
    """
    try:
        available = _segment.huge_pages_available()
    except OSError as exc:
        _finding(
            found, "ok", "huge pages", f"unknown: the probe in {_segment.SHM_DIR} failed ({exc})"
        )
        return
    if available:
        detail = (
            f"segments of {_segment.HUGE_PAGE_MIN_BYTES // 2**20} MiB or more are backed by 2 MiB "
            "pages (MADV_COLLAPSE), as numpy's big private arrays are"
        )
    else:
        detail = (
            "not granted here (needs Linux 6.1+, /dev/shm not mounted huge=deny, and madvise "
            "allowed): big arrays are copied through 4 KiB pages, a few percent slower"
        )
    _finding(found, "ok", "huge pages", detail)


def _check_platform(found: Findings) -> None:
    try:
        libc()  # raises UnsupportedPlatformError where shared_object cannot run
    except SharedObjectError as exc:
        _finding(found, "error", "platform", str(exc))
    else:
        detail = (
            f"{platform.system()} {platform.machine()}, {lock_abi()}, lock-free reads: "
            f"{LOCK_FREE_READS}"
        )
        _finding(found, "ok", "platform", detail)
        _check_robust_locks(found)
    _finding(
        found,
        "ok",
        "versions",
        f"shared_object {__version__}, Python {platform.python_version()}, numpy "
        f"{np.__version__}, sapien {_version('sapien')}",
    )


def _check_robust_locks(found: Findings) -> None:
    """Whether a writer that dies holding an object's lock is noticed (see
    _sync.robust_locks_supported).
    """
    supported = robust_locks_supported()
    if supported:
        _finding(
            found,
            "ok",
            "robust locks",
            "the kernel releases the lock of a writer that dies holding it",
        )
    elif supported is None:
        _finding(
            found,
            "ok",
            "robust locks",
            "cannot tell here (get_robust_list refused, or its number unknown on "
            f"{platform.machine()})",
        )
    else:
        _finding(
            found,
            "warn",
            "robust locks",
            "this kernel keeps no robust lock lists (qemu-user emulation, or a seccomp profile "
            "refusing set_robust_list): a writer that dies holding an object's lock leaves it "
            "taken, and later writers (and, on CPUs other than x86, readers) get "
            "LockTimeoutError until the object is re-created. Run natively, or allow "
            "set_robust_list",
        )


def doctor_findings() -> Findings:
    """Checks of the environment, each {"level": ok|warn|error, "check", "detail"}."""
    found: Findings = []
    if _check_shm(found):
        _check_sharing(found)
        _check_segments(found)
        _check_huge_pages(found)
    _check_platform(found)
    return found


def doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


def run_doctor(args: argparse.Namespace) -> int:
    findings = doctor_findings()
    if args.json:
        print(json.dumps(findings, indent=2))
    else:
        for f in findings:
            print(f"[{f['level']:5}] {f['check']}: {f['detail']}")
    return 1 if any(f["level"] == "error" for f in findings) else 0
