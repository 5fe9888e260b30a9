"""The Zenoh session a bridge opens: its configuration, from the command line or a Zenoh file.

Defaults, each overridable: peer mode; no multicast or gossip scouting (a bridge talks to the
endpoints it is given, nothing else); Zenoh's own shared-memory transport off (processes on one
host already share /dev/shm, and on loopback it would carry the traffic past the network path the
bridge exists for); timestamps on (the late joiners' cache needs them); a 3 s lease, so a cut
link is noticed in seconds and re-established once the network is back.

Commands first. A command must not wait behind a frame, neither in Zenoh's queues nor in the
kernel's. Zenoh queues each priority apart, so the bridge sends small payloads at priority
REAL_TIME and frames at DATA (``core``); but on one TCP connection a command still waits behind
whatever part of a frame the kernel already holds, the socket's send buffer and the batch being
written (64 KiB: 17 ms at 30 Mbit/s). So each ``tcp/`` or ``tls/`` endpoint a bridge connects to
becomes two connections (Zenoh's priority links: ``?prio=0-4`` for control, real-time and
interactive traffic, ``?prio=5-7`` for data). A command then waits only behind what the bulk
connection has in flight in the network's queue.

That is bounded by the connection's send buffer, which the kernel sizes for throughput (up to
4 MiB): on a slow link, over a second of frames. ``--link-rate`` names the rate of the slowest
link on the path and sizes the send buffer and Zenoh's batch so that at most about
``QUEUE_BUDGET_S`` of it is in flight (``link_buffers``). It costs throughput where round trips
are long (a connection carries at most about its buffer per round trip), and on loopback and
fast LANs, where the kernel's own sizing is best: without ``--link-rate`` the kernel and Zenoh
keep their defaults (or what a ``--config`` file sets). Measurements: docs/bridge.md, "Robots on
Wi-Fi".
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from .._errors import InvalidArgumentError
from .._extras import require

#: Zenoh priority ranges, one TCP connection each: control, real time, interactive and data-high
#: on the first; data, data-low and background (frames) on the second.
PRIORITY_LINKS = ("0-4", "5-7")
#: With --link-rate: how much of the link's time may be in flight ahead of a command.
QUEUE_BUDGET_S = 0.005
#: Zenoh's batch (the most written to a socket at once): its largest, and the least we shrink it to.
MAX_BATCH = 65535
MIN_BATCH = 8192
#: The least send buffer we ask for (the kernel doubles it, and keeps at least 4.5 KiB).
MIN_SEND_BUFFER = 4096


def link_buffers(link_rate_mbit: float) -> tuple[int, int]:
    """(SO_SNDBUF, Zenoh batch size) for a path whose slowest link has this rate. In flight on a
    connection is at most about twice the send buffer (the kernel doubles it) plus one batch:
    sized to ``QUEUE_BUDGET_S`` of the link, the batch half of it at most."""
    if not link_rate_mbit > 0 or link_rate_mbit == float("inf"):
        msg = f"--link-rate must be a positive number of Mbit/s, not {link_rate_mbit}"
        raise InvalidArgumentError(msg)
    budget = int(link_rate_mbit * 1e6 / 8 * QUEUE_BUDGET_S)
    batch = min(MAX_BATCH, max(MIN_BATCH, budget // 2))
    return max(MIN_SEND_BUFFER, (budget - batch) // 2), batch


def priority_endpoints(endpoint: str) -> list[str]:
    """``endpoint`` as one endpoint per ``PRIORITY_LINKS`` range; left as it is if it is not a
    tcp/ or tls/ one, or names its own priorities."""
    locator, sep, config = endpoint.partition("#")
    if not locator.startswith(("tcp/", "tls/")) or "prio=" in locator:
        return [endpoint]
    joiner = ";" if "?" in locator else "?"
    return [f"{locator}{joiner}prio={r}{sep}{config}" for r in PRIORITY_LINKS]


def _zenoh() -> Any:
    """The zenoh module, with zenoh.ext loaded (MissingExtraError without the zenoh extra)."""
    return require("zenoh", "zenoh.ext", extra="zenoh", feature="the bridge")


def build_config(
    *,
    listen: Sequence[str] = (),
    connect: Sequence[str] = (),
    config_file: str | None = None,
    tls: tuple[str, str, str] | None = None,
    zenoh_shm: bool = False,
    link_rate_mbit: float | None = None,
    priority_links: bool = True,
    router: str | None = None,
) -> Any:
    """A ``zenoh.Config``: the file's (or the defaults), with the endpoints and TLS given here.

    ``priority_links``: connect to each tcp/ and tls/ endpoint twice, one connection per
    ``PRIORITY_LINKS`` range (the peer must admit two links, as every bridge does; a Zenoh
    router admits one unless configured otherwise). ``link_rate_mbit``: see ``link_buffers``;
    None leaves the send buffers and the batch size to the kernel, Zenoh and ``config_file``.
    ``router``: instead of ``listen`` and ``connect``, a Zenoh router (ROS 2's rmw_zenohd) to
    join as a client, over one link: a router forwards a client's samples to everyone, while
    peers expect to reach each other directly.

    ``tls``: (CA certificate, this bridge's certificate, its private key), PEM files: mutual TLS,
    on both the links it listens on and those it connects to (``tls/host:port`` endpoints); a
    peer without a certificate signed by the CA is refused.
    """
    zenoh = _zenoh()
    if config_file is not None:
        if not os.path.isfile(config_file):
            msg = f"no Zenoh configuration file at {config_file}"
            raise InvalidArgumentError(msg)
        config = zenoh.Config.from_file(config_file)
    else:
        config = zenoh.Config()
        config.insert_json5("mode", '"peer"')
        config.insert_json5("scouting/multicast/enabled", "false")
        config.insert_json5("scouting/gossip/enabled", "false")
        config.insert_json5("transport/link/tx/lease", "3000")
    config.insert_json5("timestamping/enabled", "true")
    config.insert_json5("transport/unicast/max_links", str(len(PRIORITY_LINKS)))
    if router is not None:
        if listen or connect:
            msg = "--router replaces --listen and --connect: a client only reaches its router"
            raise InvalidArgumentError(msg)
        config.insert_json5("mode", '"client"')
        connect, priority_links = [router], False
    if link_rate_mbit is not None:
        send_buffer, batch = link_buffers(link_rate_mbit)
        for protocol in ("tcp", "tls"):
            config.insert_json5(f"transport/link/{protocol}/so_sndbuf", str(send_buffer))
        config.insert_json5("transport/link/tx/batch_size", str(batch))
    if priority_links:
        connect = [e for endpoint in connect for e in priority_endpoints(endpoint)]
    if not zenoh_shm:
        config.insert_json5("transport/shared_memory/enabled", "false")
    if listen:
        config.insert_json5("listen/endpoints", json.dumps(list(listen)))
    if connect:
        config.insert_json5("connect/endpoints", json.dumps(list(connect)))
        # Keep trying: a bridge started before its peer, or cut off from it, reconnects by itself.
        config.insert_json5("connect/timeout_ms", "-1")
        config.insert_json5("connect/exit_on_failure", "false")
    if tls is not None:
        _insert_tls(config, tls)
    return config


def _insert_tls(config: Any, tls: tuple[str, str, str]) -> None:
    """Mutual TLS on tls/ endpoints: (CA, certificate, key), PEM files that must exist."""
    ca, certificate, key = tls
    for path in tls:
        if not os.path.isfile(path):
            msg = f"no such TLS file: {path}"
            raise InvalidArgumentError(msg)
    tls_config = {
        "root_ca_certificate": ca,
        "listen_certificate": certificate,
        "listen_private_key": key,
        "connect_certificate": certificate,
        "connect_private_key": key,
        "enable_mtls": True,
        "verify_name_on_connect": False,
    }
    config.insert_json5("transport/link/tls", json.dumps(tls_config))


__all__ = ["PRIORITY_LINKS", "build_config", "link_buffers", "priority_endpoints"]
