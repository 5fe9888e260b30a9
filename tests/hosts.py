"""Two "hosts" on one machine, joined by a shaped link: for the bridge's tests and benchmarks.

Each host is a network namespace with a /dev/shm of its own; a veth pair joins them, and each
end's egress goes through a token bucket (``tc qdisc ... tbf rate R burst 256kb latency 50ms``):
a link of rate R with one bounded FIFO queue, as a Wi-Fi hop is to the processes on it. This
kernel has no ``netem``: no added delay or loss, only the rate and the queue.

A process started on a host (:meth:`TwoHosts.popen`) runs in that host's network namespace and,
through ``unshare --mount``, in a mount namespace of its own where the host's shared-memory
directory is bind-mounted over /dev/shm: every process of one host shares one /dev/shm, and the
other host's is out of sight. Needs root; ``require_root`` skips elsewhere (fails under CI=true).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

#: What tbf's queue may hold beyond the rate: ``latency`` bounds the wait of a queued packet.
BURST = "256kb"
LATENCY = "50ms"


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


def missing() -> str | None:
    """Why two hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, tc, mounts)"
    for tool in ("ip", "tc", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install iproute2 util-linux)"
    return None


class TwoHosts:
    """Hosts ``a`` and ``b`` at ``address["a"]`` and ``address["b"]``, ``rate`` apart (a tc rate:
    "100mbit"; None leaves the link unshaped). Use as a context manager; :meth:`shape` changes the
    rate in between."""

    def __init__(self, rate: str | None = None, *, congestion_control: str | None = None) -> None:
        tag = secrets.token_hex(3)
        self.namespace = {"a": f"so-{tag}-a", "b": f"so-{tag}-b"}
        self.device = {"a": f"so{tag}a", "b": f"so{tag}b"}
        subnet = 10 + secrets.randbelow(200)
        self.address = {"a": f"10.213.{subnet}.1", "b": f"10.213.{subnet}.2"}
        self.shm = {h: tempfile.mkdtemp(prefix=f"so-host-{h}-", dir="/dev/shm") for h in "ab"}
        self.rate = rate
        self.congestion_control = congestion_control
        self._made: list[str] = []
        self._restore_allowed: str | None = None

    def __enter__(self) -> TwoHosts:
        try:
            for host in "ab":
                _run("ip", "netns", "add", self.namespace[host])
                self._made.append(self.namespace[host])
            _run(
                "ip",
                "link",
                "add",
                self.device["a"],
                "type",
                "veth",
                "peer",
                "name",
                self.device["b"],
            )
            for host in "ab":
                ns, dev = self.namespace[host], self.device[host]
                _run("ip", "link", "set", dev, "netns", ns)
                _run("ip", "-n", ns, "addr", "add", f"{self.address[host]}/24", "dev", dev)
                _run("ip", "-n", ns, "link", "set", dev, "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                if self.congestion_control:
                    self._allow(self.congestion_control)
                    _run(
                        "ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                        f"net.ipv4.tcp_congestion_control={self.congestion_control}",
                    )  # fmt: skip
            self.shape(self.rate)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _allow(self, algorithm: str) -> None:
        """Let namespaces choose ``algorithm``: outside the first namespace only the algorithms
        in the machine-wide ``tcp_allowed_congestion_control`` may be set (restored on close)."""
        path = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"
        with open(path) as f:
            allowed = f.read().split()
        if algorithm not in allowed:
            self._restore_allowed = " ".join(allowed)
            with open(path, "w") as f:
                f.write(" ".join([*allowed, algorithm]))

    def shape(self, rate: str | None) -> None:
        """Both ends' egress at ``rate`` (tbf, burst 256 kB, 50 ms of queue), or unshaped."""
        self.rate = rate
        for host in "ab":
            ns, dev = self.namespace[host], self.device[host]
            if rate is None:
                subprocess.run(
                    ["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root"],
                    capture_output=True,
                    check=False,
                )
                continue
            _run(
                "ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root",
                "tbf", "rate", rate, "burst", BURST, "latency", LATENCY,
            )  # fmt: skip

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` as run on ``host``: its network namespace, its /dev/shm."""
        return [
            "ip", "netns", "exec", self.namespace[host],
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", 'mount --bind "$0" /dev/shm && exec "$@"', self.shm[host], *argv,
        ]  # fmt: skip

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` on ``host`` (every exec in the chain replaces the one before: the pid
        returned is the program's own)."""
        return subprocess.Popen(self.command(host, argv), **kwargs)

    def segments(self, host: str) -> list[str]:
        """The names in ``host``'s /dev/shm."""
        return sorted(os.listdir(self.shm[host]))

    def clear_shm(self) -> None:
        """Empty both hosts' /dev/shm (what killed processes left there)."""
        for host in "ab":
            for name in self.segments(host):
                os.unlink(os.path.join(self.shm[host], name))

    def close(self) -> None:
        for ns in reversed(self._made):  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._made.clear()
        for directory in self.shm.values():
            shutil.rmtree(directory, ignore_errors=True)
        if self._restore_allowed is not None:
            with open("/proc/sys/net/ipv4/tcp_allowed_congestion_control", "w") as f:
                f.write(self._restore_allowed)
            self._restore_allowed = None


@contextlib.contextmanager
def two_hosts(rate: str | None = None, **kwargs: Any) -> Iterator[TwoHosts]:
    with TwoHosts(rate, **kwargs) as hosts:
        yield hosts


__all__ = ["BURST", "LATENCY", "TwoHosts", "missing", "two_hosts"]
