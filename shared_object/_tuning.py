"""Tuning: the timeouts, budgets and spins of a handle, as one frozen value.

``SharedObject.create(..., tuning=Tuning(lock_timeout_s=1.0))`` and ``attach(..., tuning=...)``
take one; every field has the default the library is measured with, so most code never makes
one. A handle keeps its tuning for life; two handles on one object may differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ._errors import InvalidArgumentError
from ._sync import LOCK_FREE_READS


@dataclass(frozen=True)
class Tuning:
    """How long to wait, retry and spin. Times are in seconds (``_s``) or nanoseconds (``_ns``)."""

    #: Whoever waits for the writer mutex (writers, and readers that take it) gives up with
    #: LockTimeoutError after this long, rather than hang on a holder frozen by a debugger or
    #: SIGSTOP, or on corrupt lock bytes. A live writer holds it for one copy (about 10 ms for
    #: 100 MB), so reaching this means something is wrong, and the error says what to look at.
    lock_timeout_s: float = 10.0
    #: A reader lapped by writers retries lock-free while its attempts fit in this budget, then
    #: reads under the writer mutex (asking writers to pause), so a writer assigning in a tight
    #: loop cannot starve it. A scalar read retries many times; a frame copy that takes half the
    #: budget goes to the mutex after one lap.
    optimistic_budget_ns: int = 100_000
    #: A lock-free read of a dynamic object's slot header and schema alone (a view()'s set-up,
    #: ``kind``, ``repr``) lapped this many times in a row takes the writer mutex instead.
    header_read_tries: int = 100
    #: Whoever waits for another process's turn first yields the CPU this many times (a yield
    #: costs about 1 us and lets a holder on the same core run), then naps ``poll_s``.
    spins: int = 200
    poll_s: float = 0.00005
    #: A request to go first (a starving reader's, a waiting writer's) counts while this fresh:
    #: the stamp of a requester that died or gave up expires.
    request_fresh_ns: int = 5_000_000
    #: How long a writer pauses at most, per assign, for readers that asked to go first.
    writer_yield_max_ns: int = 2_000_000
    #: How long a reader lets a waiting writer go first at most, per read, before taking the mutex.
    reader_yield_max_ns: int = 2_000_000
    #: A writer waiting for the mutex sleeps in the kernel this long at most between renewals
    #: of its request to go first; it wakes at once when the mutex is released.
    writer_slice_s: float = 0.002
    #: A wait()er re-announces itself this often; writers wake it while its announcement
    #: (the slice plus this grace) is fresh.
    wait_slice_s: float = 1.0
    wait_grace_ns: int = 2_000_000_000
    #: Schemas (parsed nodes, and the ids of published texts) a dynamic object's handle keeps:
    #: enough for a value that flips between a few kinds.
    schema_cache_size: int = 8
    #: fetch() of an ndarray this big copies into the array of an earlier fetch once the caller
    #: dropped it; the handle keeps its last ``recycle_keep`` results for that.
    recycle_min_bytes: int = 64 * 1024
    recycle_keep: int = 2
    #: attach(timeout=...) looks for the segment again after this pause, doubling it up to the max.
    attach_poll_s: float = 0.001
    attach_poll_max_s: float = 0.05
    #: Read without a lock (x86 only: see _sync). False makes every read take the writer mutex,
    #: as on aarch64; True where the CPU does not keep loads in order is refused.
    lock_free_reads: bool = LOCK_FREE_READS

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type == "bool":
                if not isinstance(value, bool):
                    msg = f"Tuning.{field.name} must be a bool, not {value!r}"
                    raise InvalidArgumentError(msg)
                continue
            kind = int if field.type == "int" else (int, float)
            if (
                isinstance(value, bool)
                or not isinstance(value, kind)
                or not math.isfinite(value)
                or value < 0
            ):
                msg = (
                    f"Tuning.{field.name} must be a finite, non-negative {field.type}, not "
                    f"{value!r}"
                )
                raise InvalidArgumentError(msg)
        if self.lock_free_reads and not LOCK_FREE_READS:
            msg = (
                "Tuning(lock_free_reads=True): this CPU may reorder loads, so every read must "
                "take the writer lock"
            )
            raise InvalidArgumentError(msg)


DEFAULT_TUNING = Tuning()


def tuning_or_default(tuning: object) -> Tuning:
    """``tuning``, or the default for None; InvalidArgumentError for anything else."""
    if tuning is None:
        return DEFAULT_TUNING
    if not isinstance(tuning, Tuning):
        msg = f"tuning must be a shared_object.Tuning or None, not {tuning!r}"
        raise InvalidArgumentError(msg)
    return tuning


__all__ = ["DEFAULT_TUNING", "Tuning", "tuning_or_default"]
