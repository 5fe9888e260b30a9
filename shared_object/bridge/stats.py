"""What a bridge moved, per second and per object: its statistics line.

Every count is taken under one lock, by the exporters' threads and by Zenoh's network threads
that run the importer; ``report`` reads and resets the period's counts in one step.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass, field
from typing import Any

#: The counts whose totals are kept beside each period's.
COUNTS = ("sent", "received", "dropped", "malformed", "stale", "errors")


@dataclass
class _Object:
    """One object's period."""

    sent: int = 0
    sent_bytes: int = 0  # as they crossed: encoded where the object is
    sent_payload_bytes: int = 0  # what the encoded messages stand for
    received: int = 0
    received_bytes: int = 0
    encoding: str = "raw"


@dataclass
class _Period:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    sent_bytes: int = 0
    received_bytes: int = 0
    ages_ms: list[float] = field(default_factory=list)
    objects: dict[str, _Object] = field(default_factory=dict)


def _p(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2)


class Stats:
    """What flowed since the last report; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals = dict.fromkeys(COUNTS, 0)
        self._period = _Period()

    def count(self, what: str, n: int = 1) -> None:
        """``n`` more of ``what`` (one of COUNTS)."""
        with self._lock:
            self._period.counts[what] += n
            self.totals[what] += n

    def _object(self, name: str) -> _Object:
        found = self._period.objects.get(name)
        if found is None:
            found = self._period.objects[name] = _Object()
        return found

    def sent(self, name: str, size: int, payload_size: int, encoding: str = "raw") -> None:
        """One message of ``size`` bytes out for ``name``, standing for ``payload_size``."""
        with self._lock:
            self._period.counts["sent"] += 1
            self.totals["sent"] += 1
            self._period.sent_bytes += size
            record = self._object(name)
            record.sent += 1
            record.sent_bytes += size
            record.sent_payload_bytes += payload_size
            record.encoding = encoding

    def received(self, name: str, size: int, age_ms: float, encoding: str = "raw") -> None:
        """One message of ``size`` bytes in and applied to ``name``, ``age_ms`` after its change."""
        with self._lock:
            self._period.counts["received"] += 1
            self.totals["received"] += 1
            self._period.received_bytes += size
            self._period.ages_ms.append(age_ms)
            record = self._object(name)
            record.received += 1
            record.received_bytes += size
            record.encoding = encoding

    def report(self, seconds: float) -> dict[str, Any]:
        """This period's rates, ages and counts (then a new period begins).

        ``objects``: per object that moved, messages out and in per second, the mean bytes of a
        message as it crossed (``message_bytes``) and of the value it carries
        (``payload_bytes``), and its encoding. ``link``: what crossed the network, in Mbit/s:
        while an exporter's frames wait for the link (they always do when it is the bottleneck),
        ``out_mbit_s`` is the link's throughput.
        """
        with self._lock:
            period, self._period = self._period, _Period()
            totals = dict(self.totals)
        ages = sorted(period.ages_ms)
        counts = period.counts
        objects = {}
        for name, o in sorted(period.objects.items()):
            messages = o.sent + o.received
            objects[name] = {
                "out_per_s": round(o.sent / seconds, 1),
                "in_per_s": round(o.received / seconds, 1),
                "message_bytes": round((o.sent_bytes + o.received_bytes) / max(messages, 1)),
                "payload_bytes": round(o.sent_payload_bytes / o.sent) if o.sent else None,
                "encoding": o.encoding,
            }
        return {
            "sent_per_s": round(counts["sent"] / seconds, 1),
            "sent_mb_per_s": round(period.sent_bytes / 1e6 / seconds, 2),
            "received_per_s": round(counts["received"] / seconds, 1),
            "received_mb_per_s": round(period.received_bytes / 1e6 / seconds, 2),
            "dropped": counts["dropped"],
            "stale": counts["stale"],
            "malformed": counts["malformed"],
            "errors": counts["errors"],
            "age_p50_ms": round(statistics.median(ages), 2) if ages else None,
            "age_p99_ms": _p(ages, 0.99),
            "link": {
                "out_mbit_s": round(period.sent_bytes * 8 / 1e6 / seconds, 2),
                "in_mbit_s": round(period.received_bytes * 8 / 1e6 / seconds, 2),
            },
            "objects": objects,
            "totals": totals,
        }


def format_report(line: dict[str, Any]) -> str:
    """The report as text: a summary line, then a line per object that moved."""
    ages = (
        ""
        if line["age_p50_ms"] is None
        else f", age p50 {line['age_p50_ms']} ms p99 {line['age_p99_ms']} ms"
    )
    link = line["link"]
    lines = [
        f"bridge: out {line['sent_per_s']}/s {link['out_mbit_s']} Mbit/s, in "
        f"{line['received_per_s']}/s {link['in_mbit_s']} Mbit/s, dropped {line['dropped']}, "
        f"stale {line['stale']}, malformed {line['malformed']}, errors {line['errors']}{ages}"
    ]
    for name, o in line["objects"].items():
        flows = []
        if o["out_per_s"]:
            flows.append(f"out {o['out_per_s']}/s")
        if o["in_per_s"]:
            flows.append(f"in {o['in_per_s']}/s")
        size = _size(o["message_bytes"])
        if o["payload_bytes"] and o["encoding"] != "raw":
            size += f" ({o['encoding']}, {_size(o['payload_bytes'])} raw)"
        lines.append(f"  {name}: {', '.join(flows)}, {size} a message")
    return "\n".join(lines)


def _size(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n} B"


__all__ = ["COUNTS", "Stats", "format_report"]
