"""The ``shared-object`` command (also ``python -m shared_object``): segments in /dev/shm, and the
environment they live in.

    shared-object ls [--json]             the segments this library made, and who holds them
    shared-object inspect NAME [--json]   one segment's header, decoded, and a preview of its value
    shared-object rm NAME...              remove segments by name (open handles keep working)
    shared-object gc [--dry-run] [--prefix P] [--json]
                                          remove segments (and half-created files) no live handle
                                          holds
    shared-object doctor [--json]         what in this environment will break shared memory, and the
    fix
    shared-object health NAME [--max-age S]  exit 0 if NAME changed in the last S seconds
    (healthchecks)

"Held" means some open handle, in any process or container sharing /dev/shm, holds the file's
liveness lock (see ``_flock``); the kernel drops it when a process dies, however it dies.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import pwd
import stat
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import numpy as np

from . import __version__, _flock, _layout, _schema, _segment
from ._dynamic import SharedDynamicObject
from ._errors import SegmentNotFoundError, SharedObjectError
from ._object import SharedObject
from ._sync import LOCK_FREE_READS, libc, lock_abi, robust_locks_supported
from ._tuning import Tuning

#: Below this, /dev/shm is likely a container's default (64 MiB): frames of a few MB x 2 slots fill
#: it.
SMALL_SHM_BYTES = 128 * 1024 * 1024


def _open_any(name: str, tuning: Tuning | None = None) -> SharedObject:
    """Attach with the class the segment was created as."""
    segment = _segment.Segment.open(name)
    try:
        header = _layout.read_header(segment.buf, segment.file_size(), name)
    finally:
        segment.close()
    cls = SharedDynamicObject if header.dynamic else SharedObject
    return cls.attach(name, tuning=tuning)


def _starts_with_magic(path: str) -> bool:
    """Whether the file at ``path`` begins as every segment of this library does (OSError if
    unreadable).
    """
    with open(path, "rb") as f:
        return f.read(len(_layout.MAGIC)) == _layout.MAGIC


def _is_ours(path: str) -> bool:
    try:
        return _starts_with_magic(path)
    except OSError:
        return False


def _not_ours(path: str) -> str:
    """Why the file at ``path`` is not a segment of this library, or "" if it is (or is gone)."""
    try:
        if _starts_with_magic(path):
            return ""
    except FileNotFoundError:
        return ""  # the caller's own call reports the missing name
    except OSError as exc:
        return f"cannot tell whether it is a shared_object segment ({exc.strerror})"
    return "it is not a shared_object segment (it does not start with this library's magic)"


def _segment_names() -> list[str]:
    try:
        entries = os.listdir(_segment.SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted(
        n for n in entries if not n.startswith(".") and _is_ours(os.path.join(_segment.SHM_DIR, n))
    )


def _temp_files() -> list[str]:
    try:
        return sorted(n for n in os.listdir(_segment.SHM_DIR) if n.startswith(_segment.TEMP_PREFIX))
    except FileNotFoundError:
        return []


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _held(path: str) -> bool | None:
    try:
        return _flock.held_by_anyone(path)
    except OSError:
        return None  # cannot even open it (permissions): unknown


def describe_segment(name: str, *, detail: bool = False) -> dict[str, Any]:
    """Facts about one segment, for ``ls``; with ``detail``, also the decoded header and a value
    preview.
    """
    path = _segment.segment_path(name)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        msg = f"no shared object named {name!r} in {_segment.SHM_DIR}"
        raise SegmentNotFoundError(msg) from exc
    info: dict[str, Any] = {
        # bytes: the file's size; memory: what it takes of /dev/shm, counted in whole pages
        "name": name,
        "bytes": st.st_size,
        "memory": st.st_blocks * 512,
        "mode": f"{stat.S_IMODE(st.st_mode):#o}",
        "owner": _owner(st.st_uid),
        "uid": st.st_uid,
        "held": _held(path),
    }
    try:
        with _open_any(name) as obj:
            info["kind"] = obj.kind
            info["dynamic"] = isinstance(obj, SharedDynamicObject)
            info["age_s"] = round((time.time_ns() - obj.mtime) / 1e9, 3)
            if detail:
                info["header"] = _header_facts(name)
                info["value"] = _preview(obj.fetch())
    except (SharedObjectError, OSError) as exc:
        info["error"] = str(exc)
    return info


def _preview(value: Any) -> str:
    if isinstance(value, np.ndarray):
        kind = _schema.describe(value)
        if not value.size:
            return f"{kind} (empty)"
        try:
            return f"{kind} min={value.min()} max={value.max()}"
        except TypeError:  # no ordering: structured records, byte and unicode strings
            return _shorten(f"{kind} first={value.flat[:3].tolist()!r}")
    return _shorten(repr(value))


def _shorten(text: str) -> str:
    return text if len(text) < 200 else text[:197] + "..."


def cmd_ls(args: argparse.Namespace) -> int:
    rows = []
    for name in _segment_names():
        try:
            rows.append(describe_segment(name))
        except SegmentNotFoundError:
            continue  # removed since the directory was listed
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no shared_object segments in {_segment.SHM_DIR}")
        return 0
    print(f"{'NAME':28} {'KIND':36} {'MEMORY':>10} {'AGE':>8} {'MODE':>6} {'OWNER':8} HELD")
    for r in rows:
        age = f"{r['age_s']:.1f}s" if "age_s" in r else "?"
        kind = r.get("kind", r.get("error", "?"))[:36]
        held = {True: "yes", False: "no (stale)", None: "?"}[r["held"]]
        print(
            f"{r['name']:28} {kind:36} {r['memory']:>10} {age:>8} {r['mode']:>6} {r['owner']:8} "
            f"{held}"
        )
    return 0


def _header_facts(name: str) -> dict[str, Any]:
    """A segment's header, decoded (read from the file: no handle, no lock)."""
    segment = _segment.Segment.open(name)
    try:
        header = _layout.read_header(segment.buf, segment.file_size(), name)
        words = _layout.header_words(segment.buf)
        state = words[_layout.STATE_WORD]
        words.release()
    finally:
        segment.close()
    return {
        "layout_version": _layout.VERSION,
        "dynamic": header.dynamic,
        "single_slot": header.single_slot,
        "lock_abi": header.lock_abi,
        "changes": state >> _layout.CHANGE_SHIFT,
        "current_slot": state & _layout.CURRENT_SLOT,
        "writing": bool(state & _layout.WRITING),
        "slots": [{"offset": o, "capacity": c} for o, c in header.slots],
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    info = describe_segment(args.name, detail=True)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:8} {value}")
    return 1 if "error" in info else 0


def cmd_rm(args: argparse.Namespace) -> int:
    status = 0
    for name in args.names:
        try:
            path = _segment.segment_path(name)
            foreign = _not_ours(path)
            if foreign:  # another program's shared memory, named by a typo, say: not ours to remove
                print(
                    f"error: left {path} in place: {foreign}; remove it with `rm {path}` if you "
                    "are sure",
                    file=sys.stderr,
                )
                status = 1
                continue
            held = _held(path)
            _segment.unlink(name)
            note = (
                " (still held by open handles; they keep their mapping until they close)"
                if held
                else ""
            )
            print(f"removed {name}{note}")
        except SharedObjectError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    return status


def cmd_gc(args: argparse.Namespace) -> int:
    removed: list[dict[str, str]] = []
    kept: list[dict[str, str]] = []
    temp_prefix = _segment.TEMP_PREFIX + args.prefix
    candidates = [n for n in _segment_names() if n.startswith(args.prefix)]
    candidates += [n for n in _temp_files() if n.startswith(temp_prefix)]
    for name in candidates:
        path = os.path.join(_segment.SHM_DIR, name)
        try:
            stale = (
                not _flock.held_by_anyone(path) if args.dry_run else _flock.remove_if_unused(path)
            )
        except OSError as exc:  # e.g. another user's segment we may not open
            kept.append({"name": name, "reason": str(exc)})
            continue
        (removed if stale else kept).append(
            {"name": name} if stale else {"name": name, "reason": "held"}
        )
    if args.json:
        print(
            json.dumps(
                {"removed" if not args.dry_run else "would_remove": removed, "kept": kept}, indent=2
            )
        )
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for r in removed:
        print(f"{verb} {r['name']}")
    print(f"{verb} {len(removed)} stale segment(s); kept {len(kept)} held or unreadable")
    return 0


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
    for name in _segment_names():
        path = os.path.join(_segment.SHM_DIR, name)
        if os.stat(path).st_uid != os.getuid():
            others += 1
            unreadable += not os.access(path, os.R_OK | os.W_OK)
        stale += _held(path) is False
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
    temps = len(_temp_files())
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


def cmd_doctor(args: argparse.Namespace) -> int:
    findings = doctor_findings()
    if args.json:
        print(json.dumps(findings, indent=2))
    else:
        for f in findings:
            print(f"[{f['level']:5}] {f['check']}: {f['detail']}")
    return 1 if any(f["level"] == "error" for f in findings) else 0


def cmd_health(args: argparse.Namespace) -> int:
    try:
        with _open_any(args.name) as obj:
            age = (time.time_ns() - obj.mtime) / 1e9
    except (SharedObjectError, OSError) as exc:
        print(f"unhealthy: {exc}")
        return 1
    if age > args.max_age:
        print(f"unhealthy: {args.name!r} last changed {age:.1f} s ago (more than {args.max_age} s)")
        return 1
    print(f"healthy: {args.name!r} changed {age:.2f} s ago")
    return 0


def _seconds(text: str) -> float:
    """argparse type for --max-age: a number of seconds >= 0 (inf: only check the name exists)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:  # also false for NaN, with which `age > max_age` would always pass
        msg = f"expected a number of seconds >= 0, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shared-object",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list the shared_object segments and whether they are held")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=cmd_ls)
    inspect = sub.add_parser("inspect", help="decode one segment and preview its value")
    inspect.add_argument("name")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(run=cmd_inspect)
    rm = sub.add_parser("rm", help="remove segments by name")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(run=cmd_rm)
    gc = sub.add_parser("gc", help="remove the segments no live handle holds")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    gc.add_argument("--prefix", default="", help="only segments whose names start with this")
    gc.add_argument("--json", action="store_true")
    gc.set_defaults(run=cmd_gc)
    doctor = sub.add_parser("doctor", help="check this environment for shared-memory problems")
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(run=cmd_doctor)
    health = sub.add_parser(
        "health", help="exit 0 if NAME exists and changed within --max-age seconds"
    )
    health.add_argument("name")
    health.add_argument(
        "--max-age",
        type=_seconds,
        default=5.0,
        help="seconds (default 5; inf: only check it exists)",
    )
    health.set_defaults(run=cmd_health)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # here, so that a reader gone away is handled below, not at exit
    except SharedObjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `shared-object ls | head`: the reader has what it wanted. Point stdout at /dev/null
        # so the interpreter's own flush at exit does not fail again (the Python docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


__all__ = ["build_parser", "doctor_findings", "main"]
