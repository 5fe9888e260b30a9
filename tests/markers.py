"""Where a test needs something that not every machine it may run on has (an aarch64 robot, an
arm64 image under qemu-user emulation): skip it there, saying why, rather than fail.

Never under CI=true: CI runs natively on x86 Linux, where every one of these must run, so there a
machine without what they need fails them instead of hiding them.
"""

from __future__ import annotations

import os

import pytest

from shared_object import _sync

_CI = os.environ.get("CI", "").lower() == "true"

#: For tests of the lock-free read path itself (laps, retries, ``torn``): x86 only (see _sync).
x86_lock_free_reads = pytest.mark.skipif(
    not _sync.LOCK_FREE_READS and not _CI,
    reason="lock-free reads exist on x86 only: on this CPU every read takes the writer lock",
)

#: For tests that kill a lock holder, or ask the kernel which locks this thread holds.
needs_robust_locks = pytest.mark.skipif(
    _sync.robust_locks_supported() is not True and not _CI,
    reason="this kernel keeps no robust lock lists, or will not show them (qemu-user emulation, seccomp): "
    "a dead holder's lock is never released here, as `shared-object doctor` says; run these natively",
)
