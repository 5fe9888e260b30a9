"""``shared-object top``: what is flowing right now, per object, refreshed in place.

Every number comes from the header and the slot table, read without a lock and without reading
a payload, so ``top`` never slows a writer or a reader down:

- updates/s: the change counter's growth (assigns and triggers) over the last interval;
- MB/s: updates/s times the current value's payload size;
- age: now minus the header's mtime;
- handles: the shared ``flock`` each open handle holds on its segment, as the kernel lists them
  in /proc/locks (any process, any container sharing this /dev/shm);
- kind and size: from the current slot's schema, parsed once per schema;
- history (lost): a history object's ring size, and the values its readers lost (all of them
  together: each reader adds its own to the header).

Keys while it runs in a terminal: ``n`` name, ``r`` updates/s, ``b`` MB/s, ``a`` age, ``h``
handles, ``s`` size (sort by it; again to reverse), ``q`` quit.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import Any

from .. import _codecs, _layout, _probe, _schema
from .._errors import SharedObjectError
from .._names import segment_path
from ._common import positive

#: --sort choice -> (row key, largest first?)
SORT_KEYS = {
    "name": ("name", False),
    "rate": ("updates_per_s", True),
    "bandwidth": ("mb_per_s", True),
    "age": ("age_s", False),
    "handles": ("handles", True),
    "size": ("size", True),
}
_KEY_TO_SORT = {"n": "name", "r": "rate", "b": "bandwidth", "a": "age", "h": "handles", "s": "size"}


class _Kinds:
    """The current slot's kind and payload size per object, parsed once per schema."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, bytes], tuple[str, int]] = {}

    def of(self, name: str, state: _probe.HeaderState) -> tuple[str, int]:
        """(kind, payload bytes) of the value readers read now; ("?", 0) if it cannot be read.

        Read lock-free from the file: a writer may be rewriting a dynamic object's slot header
        just then, and the next refresh reads it again.
        """
        try:
            with open(segment_path(name), "rb") as f:
                table = os.pread(f.fileno(), 2 * _layout.SLOT_ENTRY.size, _layout.SLOT_TABLE_OFFSET)
                # A ring's slots all hold the same kind: slot 0 says it
                slot = 0 if state.history else state.current_slot
                offset, _ = _layout.SLOT_ENTRY.unpack_from(table, _layout.SLOT_ENTRY.size * slot)
                header = os.pread(f.fileno(), _layout.SLOT_HEADER_SIZE, offset)
                schema_id, schema_len, _, _, payload_len = _layout.SLOT_HEADER.unpack_from(
                    header, 0
                )
                if schema_len > state.file_size:
                    return "?", 0
                text = os.pread(f.fileno(), schema_len, offset + _layout.SLOT_HEADER_SIZE)
        except (OSError, ValueError):
            return "?", 0
        key = (name, schema_id, text)
        known = self._cache.get(key)
        if known is None:
            try:
                source = f"segment {name!r}"
                node = _codecs.build_checked(_schema.loads(text, source), source)
            except (SharedObjectError, ValueError, TypeError):
                return "?", 0
            known = self._cache[key] = (node.describe(), payload_len)
        return known


def _flock_counts() -> dict[tuple[int, int, int], int]:
    """(major, minor, inode) -> how many shared flocks the kernel lists for that file."""
    counts: dict[tuple[int, int, int], int] = {}
    try:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                # "1: FLOCK  ADVISORY  READ 1234 00:1a:5678 0 EOF" (blocked waiters read "->")
                if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "READ":
                    continue
                major, minor, inode = fields[5].split(":")
                key = (int(major, 16), int(minor, 16), int(inode))
                counts[key] = counts.get(key, 0) + 1
    except (OSError, ValueError):
        pass
    return counts


def _matching(patterns: list[str]) -> list[str]:
    names = _probe.segment_names()
    if not patterns:
        return names
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


class Sampler:
    """Successive samples of the objects' headers, and the rates between two of them."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = patterns
        self.kinds = _Kinds()
        self.last: dict[
            str, tuple[int, int]
        ] = {}  # name -> (changes, monotonic ns) at the last sample

    def sample(self) -> list[dict[str, Any]]:
        now_ns, now_mono = time.time_ns(), time.monotonic_ns()
        locks = _flock_counts()
        rows = []
        seen: dict[str, tuple[int, int]] = {}
        for name in _matching(self.patterns):
            try:
                state = _probe.read_state(name)
                st = os.stat(segment_path(name))
            except (SharedObjectError, OSError):
                continue  # removed meanwhile, or not readable: not ours to show
            kind, size = self.kinds.of(name, state)
            before = self.last.get(name)
            seen[name] = (state.changes, now_mono)
            if before is None:
                rate = None
            else:
                elapsed = (now_mono - before[1]) / 1e9
                rate = (state.changes - before[0]) / elapsed if elapsed > 0 else 0.0
            rows.append(
                {
                    "name": name,
                    "kind": kind,
                    "size": size,
                    "memory": st.st_blocks * 512,
                    "changes": state.changes,
                    "updates_per_s": rate,
                    "mb_per_s": None if rate is None else rate * size / 1e6,
                    "age_s": round(state.age_s(now_ns), 3),
                    "handles": locks.get((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino), 0),
                    "dynamic": state.dynamic,
                    "single_slot": state.single_slot,
                    "history": state.history or None,
                    "lost": state.lost if state.history else None,
                }
            )
        self.last = seen
        return rows


def sort_rows(rows: list[dict[str, Any]], sort: str, reverse: bool = False) -> list[dict[str, Any]]:
    key, largest_first = SORT_KEYS[sort]
    ordered = sorted(
        rows, key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0, r["name"])
    )
    if largest_first != reverse:
        known = [r for r in ordered if r[key] is not None]
        ordered = known[::-1] + [r for r in ordered if r[key] is None]
    return ordered


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def render(rows: list[dict[str, Any]], sort: str, interval: float) -> str:
    total_rate = sum(r["updates_per_s"] or 0 for r in rows)
    total_mb = sum(r["mb_per_s"] or 0 for r in rows)
    width = min(max([4, *(len(r["name"]) for r in rows)]), 48)
    lines = [
        f"shared-object top: {len(rows)} objects, {total_rate:.1f} updates/s, {total_mb:.2f} MB/s"
        f" (every {interval:g} s; sort: {sort}; keys n r b a h s, q quits)",
        f"{'NAME':{width}} {'UPDATES/S':>10} {'MB/S':>9} {'AGE':>9} {'HANDLES':>7} "
        f"{'SIZE':>10} {'HISTORY (LOST)':>16}  KIND",
    ]
    for r in rows:
        rate = "-" if r["updates_per_s"] is None else f"{r['updates_per_s']:.1f}"
        mb = "-" if r["mb_per_s"] is None else f"{r['mb_per_s']:.2f}"
        history = f"{r['history']} ({r['lost']})" if r.get("history") else "-"
        lines.append(
            f"{r['name'][:width]:{width}} {rate:>10} {mb:>9} {r['age_s']:>8.1f}s {r['handles']:>7} "
            f"{_human(r['size']):>10} {history:>16}  {r['kind'][:60]}"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def _keys() -> Iterator[bool]:
    """Single keypresses from a terminal on stdin (cbreak mode), restored on the way out."""
    if not sys.stdin.isatty():
        yield False
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _next_key(seconds: float, interactive: bool) -> str | None:
    """A key pressed within ``seconds`` (then at once), or None when they have passed."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not interactive:
            time.sleep(left)
            break
        if select.select([sys.stdin], [], [], left)[0]:
            return sys.stdin.read(1)
    return None


def _draw(rows: list[dict[str, Any]], args: argparse.Namespace, sort: str, ansi: bool) -> None:
    if args.json:
        print(json.dumps(rows), flush=True)
        return
    text = render(rows, sort, args.interval)
    if ansi:  # home, draw, clear what is left of the last frame: no flicker
        text = "\x1b[H" + text.replace("\n", "\x1b[K\n") + "\x1b[K\x1b[J"
    else:
        text += "\n"
    print(text, end="", flush=True)


def top_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "patterns", nargs="*", metavar="PATTERN", help="glob patterns (default: all)"
    )
    parser.add_argument(
        "--sort", choices=["name", "rate", "bandwidth", "age", "handles", "size"], default="name"
    )
    parser.add_argument("--interval", type=positive, default=1.0, help="seconds between refreshes")
    parser.add_argument(
        "--once", action="store_true", help="one measurement over --interval, then exit"
    )
    parser.add_argument(
        "--json", action="store_true", help="JSON lines (one per refresh); implies no ANSI"
    )


def run_top(args: argparse.Namespace) -> int:
    sampler = Sampler(args.patterns)
    sampler.sample()  # the baseline: rates need two samples
    if args.once:
        time.sleep(args.interval)
        rows = sort_rows(sampler.sample(), args.sort)
        print(json.dumps(rows) if args.json else render(rows, args.sort, args.interval))
        return 0
    sort, reverse = args.sort, False
    ansi = not args.json and sys.stdout.isatty()
    if ansi:
        print("\x1b[2J", end="")  # a clear screen to draw on; later frames overwrite in place
    with _keys() as interactive:
        try:
            while True:
                key = _next_key(args.interval, interactive)
                if key == "q":
                    return 0
                if key in _KEY_TO_SORT:
                    reverse = not reverse if _KEY_TO_SORT[key] == sort else False
                    sort = _KEY_TO_SORT[key]
                _draw(sort_rows(sampler.sample(), sort, reverse), args, sort, ansi)
        except KeyboardInterrupt:
            return 0


__all__ = ["Sampler", "render", "run_top", "sort_rows", "top_arguments"]
