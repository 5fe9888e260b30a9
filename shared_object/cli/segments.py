"""``shared-object ls``, ``inspect``, ``rm`` and ``gc``: the segments in /dev/shm.

"Held" means some open handle, in any process or container sharing /dev/shm, holds the file's
liveness lock (see ``_flock``); the kernel drops it when a process dies, however it dies.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import stat
import sys
import time
from typing import Any

import numpy as np

from .. import _flock, _layout, _probe, _schema, _segment
from .._dynamic import SharedDynamicObject, open_any
from .._errors import SegmentNotFoundError, SharedObjectError
from .._probe import segment_names
from ._common import SEVERAL


def ls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


def inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")
    parser.add_argument("--json", action="store_true")


def rm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME")


def gc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    parser.add_argument(
        "--prefix",
        metavar="PREFIX",
        help="only segments whose names start with one of these",
        **SEVERAL,
    )
    parser.add_argument("--json", action="store_true")


def _not_ours(path: str) -> str:
    """Why the file at ``path`` is not a segment of this library, or "" if it is (or is gone)."""
    try:
        if _probe.starts_with_magic(path):
            return ""
    except FileNotFoundError:
        return ""  # the caller's own call reports the missing name
    except OSError as exc:
        return f"cannot tell whether it is a shared_object segment ({exc.strerror})"
    return "it is not a shared_object segment (it does not start with this library's magic)"


def temp_files() -> list[str]:
    try:
        return sorted(n for n in os.listdir(_segment.SHM_DIR) if n.startswith(_segment.TEMP_PREFIX))
    except FileNotFoundError:
        return []


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def held_by_anyone(path: str) -> bool | None:
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
        "held": held_by_anyone(path),
    }
    try:
        with open_any(name) as obj:
            info["kind"] = obj.kind
            info["dynamic"] = isinstance(obj, SharedDynamicObject)
            info["history"] = obj.history
            if obj.history:  # the values its readers lost, all together (see fetch_new)
                info["lost"] = _probe.read_state(name).lost
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


def run_ls(args: argparse.Namespace) -> int:
    rows = []
    for name in segment_names():
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
    print(
        f"{'NAME':28} {'KIND':36} {'HISTORY':>12} {'MEMORY':>10} {'AGE':>8} {'MODE':>6} "
        f"{'OWNER':8} HELD"
    )
    for r in rows:
        age = f"{r['age_s']:.1f}s" if "age_s" in r else "?"
        kind = r.get("kind", r.get("error", "?"))[:36]
        held = {True: "yes", False: "no (stale)", None: "?"}[r["held"]]
        history = f"{r['history']} ({r['lost']} lost)" if r.get("history") else "-"
        print(
            f"{r['name']:28} {kind:36} {history:>12} {r['memory']:>10} {age:>8} {r['mode']:>6} "
            f"{r['owner']:8} {held}"
        )
    return 0


def _header_facts(name: str) -> dict[str, Any]:
    """A segment's header, decoded (read from the file: no handle, no lock)."""
    segment = _segment.Segment.open(name)
    try:
        header = _layout.read_header(segment.buf, segment.file_size(), name)
        words = _layout.header_words(segment.buf)
        state, lost = words[_layout.STATE_WORD], words[_layout.LOST_WORD]
        words.release()
    finally:
        segment.close()
    facts: dict[str, Any] = {
        "layout_version": _layout.VERSION_HISTORY if header.ring else _layout.VERSION,
        "dynamic": header.dynamic,
        "single_slot": header.single_slot,
        "lock_abi": header.lock_abi,
        "changes": state >> _layout.CHANGE_SHIFT,
        "current_slot": _layout.current_slot(state, header.ring),
        "writing": bool(state & _layout.WRITING),
        "slots": [{"offset": o, "capacity": c} for o, c in header.slots],
    }
    if header.ring:
        changes = state >> _layout.CHANGE_SHIFT
        facts["ring"] = {
            "slots": header.ring,
            "stride": header.stride,
            "holds_changes": [max(0, changes - header.ring + 1), changes],
            "lost_by_readers": lost,
        }
    return facts


def run_inspect(args: argparse.Namespace) -> int:
    info = describe_segment(args.name, detail=True)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:8} {value}")
    return 1 if "error" in info else 0


def run_rm(args: argparse.Namespace) -> int:
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
            held = held_by_anyone(path)
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


def run_gc(args: argparse.Namespace) -> int:
    removed: list[dict[str, str]] = []
    kept: list[dict[str, str]] = []
    prefixes = tuple(args.prefix) or ("",)
    temp_prefixes = tuple(_segment.TEMP_PREFIX + p for p in prefixes)
    candidates = [n for n in segment_names() if n.startswith(prefixes)]
    candidates += [n for n in temp_files() if n.startswith(temp_prefixes)]
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
