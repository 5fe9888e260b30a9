"""``shared-object bridge``: run a bridge until Ctrl-C or SIGTERM, with a line of statistics a
second.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from .defaults import BIG_PAYLOAD, DEFAULT_PREFIX


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--export",
        nargs="+",
        default=[],
        metavar="PATTERN",
        help="publish the local objects matching these glob patterns",
    )
    parser.add_argument(
        "--import",
        dest="imports",
        nargs="+",
        default=[],
        metavar="PATTERN[=LOCAL]",
        help="mirror the remote objects matching these patterns (remote=local renames one)",
    )
    parser.add_argument(
        "--listen", nargs="+", default=[], metavar="ENDPOINT", help="e.g. tcp/0.0.0.0:7447"
    )
    parser.add_argument(
        "--connect", nargs="+", default=[], metavar="ENDPOINT", help="e.g. tcp/host-a:7447"
    )
    parser.add_argument(
        "--config", help="a Zenoh JSON5 configuration file (routers, TLS, access control)"
    )
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"the key prefix (default {DEFAULT_PREFIX})"
    )
    parser.add_argument(
        "--tls",
        nargs=3,
        metavar=("CA", "CERT", "KEY"),
        help="mutual TLS on tls/ endpoints: the CA's certificate, ours, and our key (PEM)",
    )
    parser.add_argument(
        "--congestion",
        choices=["auto", "drop", "block"],
        default="auto",
        help=f"auto: DROP for payloads of {BIG_PAYLOAD} bytes or more, BLOCK below",
    )
    parser.add_argument(
        "--zenoh-shm",
        action="store_true",
        help="let Zenoh use its own shared memory between peers on one host",
    )
    parser.add_argument(
        "--mode",
        type=lambda t: int(t, 8),
        default=0o600,
        help="permission bits of objects an import creates (octal, default 600)",
    )
    parser.add_argument("--json", action="store_true", help="statistics as JSON lines")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_bridge(args: argparse.Namespace) -> int:
    # Here, not at the top: `shared-object --help` (and the healthcheck's `health`) build this
    # command's parser without loading numpy or Zenoh.
    from .core import Bridge
    from .session import _zenoh, build_config

    if not args.export and not args.imports:
        print("error: nothing to do: give --export and/or --import patterns", file=sys.stderr)
        return 2
    zenoh = _zenoh()
    config = build_config(
        listen=args.listen,
        connect=args.connect,
        config_file=args.config,
        tls=tuple(args.tls) if args.tls else None,
        zenoh_shm=args.zenoh_shm,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    session = zenoh.open(config)
    bridge = Bridge(
        session,
        exports=args.export,
        imports=args.imports,
        prefix=args.prefix,
        congestion=args.congestion,
        mode=args.mode,
    )
    bridge.start()
    print(
        f"bridge {bridge.source.hex()[:8]}: exporting {args.export or 'nothing'}, importing "
        f"{args.imports or 'nothing'} under {args.prefix!r}",
        flush=True,
    )
    try:
        last = time.monotonic()
        while True:
            time.sleep(1.0)
            now = time.monotonic()
            _report(bridge.stats.report(now - last), args.json)
            last = now
    except KeyboardInterrupt:
        pass
    finally:
        bridge.stop()
        session.close()
    return 0


def _report(line: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(line), flush=True)
        return
    ages = (
        ""
        if line["age_p50_ms"] is None
        else f", age p50 {line['age_p50_ms']} ms p99 {line['age_p99_ms']} ms"
    )
    print(
        f"bridge: out {line['sent_per_s']}/s {line['sent_mb_per_s']} MB/s, in "
        f"{line['received_per_s']}/s {line['received_mb_per_s']} MB/s, dropped {line['dropped']}, "
        f"stale {line['stale']}, malformed {line['malformed']}, errors {line['errors']}{ages}",
        flush=True,
    )


__all__ = ["add_arguments", "cmd_bridge"]
