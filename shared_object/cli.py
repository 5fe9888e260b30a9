"""The ``shared-object`` command: look at the segments in /dev/shm.

``shared-object ls`` lists them, ``inspect NAME`` decodes one, ``health NAME`` tells a container
healthcheck whether a producer is alive (its object exists and changed recently).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import stat
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _codecs, _layout, _segment
from ._errors import SharedObjectError
from ._object import SharedDynamicObject, SharedObject


def _open_any(name: str) -> SharedObject:
    """Attach with the class the segment was created as."""
    segment = _segment.Segment.open(name)
    try:
        header = _layout.read_header(segment.buf, segment.file_size(), name)
    finally:
        segment.close()
    cls = SharedDynamicObject if header.dynamic else SharedObject
    return cls.attach(name)


def _is_ours(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(_layout.MAGIC)) == _layout.MAGIC
    except OSError:
        return False


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def describe_segment(name: str) -> dict[str, Any]:
    """Facts about one segment, for ``ls`` and ``inspect``."""
    path = _segment.segment_path(name)
    st = os.stat(path)
    info: dict[str, Any] = {
        "name": name, "bytes": st.st_size, "mode": f"{stat.S_IMODE(st.st_mode):#o}", "owner": _owner(st.st_uid),
    }
    try:
        with _open_any(name) as obj:
            info["kind"] = obj.kind
            info["dynamic"] = isinstance(obj, SharedDynamicObject)
            info["age_s"] = round((time.time_ns() - obj.mtime) / 1e9, 3)
    except (SharedObjectError, OSError) as exc:
        info["error"] = str(exc)
    return info


def _preview(value: Any) -> str:
    if isinstance(value, np.ndarray):
        with np.printoptions(threshold=8, edgeitems=2, precision=4):
            low, high = (value.min(), value.max()) if value.size else ("-", "-")
            return f"{_codecs.describe(value)} min={low} max={high}"
    text = repr(value)
    return text if len(text) < 200 else text[:197] + "..."


def cmd_ls(args: argparse.Namespace) -> int:
    names = sorted(
        n for n in os.listdir(_segment.SHM_DIR)
        if not n.startswith(".") and _is_ours(os.path.join(_segment.SHM_DIR, n))
    )
    rows = [describe_segment(n) for n in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no shared_object segments in {_segment.SHM_DIR}")
        return 0
    print(f"{'NAME':32} {'KIND':40} {'BYTES':>10} {'AGE':>9} {'MODE':>6} OWNER")
    for r in rows:
        age = f"{r['age_s']:.1f}s" if "age_s" in r else "?"
        kind = r.get("kind", r.get("error", "?"))[:40]
        print(f"{r['name']:32} {kind:40} {r['bytes']:>10} {age:>9} {r['mode']:>6} {r['owner']}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    info = describe_segment(args.name)
    if "error" not in info:
        with _open_any(args.name) as obj:
            info["value"] = _preview(obj.fetch())
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:8} {value}")
    return 1 if "error" in info else 0


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shared-object", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list the shared_object segments")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=cmd_ls)
    inspect = sub.add_parser("inspect", help="decode one segment and preview its value")
    inspect.add_argument("name")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(run=cmd_inspect)
    health = sub.add_parser("health", help="exit 0 if NAME exists and changed within --max-age seconds")
    health.add_argument("name")
    health.add_argument("--max-age", type=float, default=5.0)
    health.set_defaults(run=cmd_health)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except SharedObjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


__all__ = ["main"]
