"""``shared-object bridge``: run a bridge until Ctrl-C or SIGTERM, with its statistics every
second (the bridge itself: ``shared_object.bridge``)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from ..bridge.defaults import BIG_PAYLOAD, DEFAULT_PREFIX
from ._common import SEVERAL


def bridge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--export",
        metavar="PATTERN",
        help="publish the local objects matching these glob patterns",
        **SEVERAL,
    )
    parser.add_argument(
        "--import",
        dest="imports",
        metavar="PATTERN[=LOCAL]",
        help="mirror the remote objects matching these patterns (remote=local renames one)",
        **SEVERAL,
    )
    parser.add_argument("--listen", metavar="ENDPOINT", help="e.g. tcp/0.0.0.0:7447", **SEVERAL)
    parser.add_argument("--connect", metavar="ENDPOINT", help="e.g. tcp/host-a:7447", **SEVERAL)
    parser.add_argument(
        "--router",
        metavar="ENDPOINT",
        help="join a Zenoh router (ROS 2's rmw_zenohd: tcp/robot:7447) as a client, instead of "
        "--listen and --connect",
    )
    parser.add_argument(
        "--encode",
        metavar="PATTERN=CODEC[:LEVEL]",
        help="send the objects matching PATTERN encoded: jpeg[:QUALITY] or png[:LEVEL] (their "
        "images), zstd[:LEVEL] or lz4[:LEVEL] (the whole payload), raw (the default)",
        **SEVERAL,
    )
    parser.add_argument(
        "--max-rate",
        metavar="PATTERN=HZ",
        help="send at most HZ messages a second of the objects matching PATTERN (the newest)",
        **SEVERAL,
    )
    parser.add_argument(
        "--link-rate",
        type=float,
        metavar="MBIT",
        help="the rate of the slowest link to the peers (Wi-Fi), Mbit/s: sizes the TCP send "
        "buffers so that a command waits behind at most ~5 ms of frames (default: the kernel's "
        "sizing, best on loopback and fast LANs)",
    )
    ros2 = parser.add_argument_group(
        "ROS 2", "our objects as ROS 2 topics and back, spoken as rmw_zenoh (extra ros2)"
    )
    ros2.add_argument(
        "--ros2-export",
        metavar="NAME[=/TOPIC[:TYPE]]",
        help="publish an object (or a leaf: NAME.KEY) as a ROS 2 topic (default /NAME; a dict "
        "value: a topic per key, /NAME/KEY); TYPE a message type, or bgr8, bgra8, mono16 for an "
        "image",
        **SEVERAL,
    )
    ros2.add_argument(
        "--ros2-import",
        metavar="/TOPIC[:TYPE]=NAME",
        help="mirror a ROS 2 topic into the object NAME (any type the topic has, if none given)",
        **SEVERAL,
    )
    ros2.add_argument(
        "--ros2-domain",
        type=int,
        metavar="N",
        help="the ROS 2 domain (default: ROS_DOMAIN_ID, else 0)",
    )
    ros2.add_argument(
        "--ros2-frame-id", metavar="ID", help="the frame id of headers (default: the object's name)"
    )
    ros2.add_argument(
        "--ros2-node", default="shared_object_bridge", metavar="NAME", help="the node's name"
    )
    ros2.add_argument(
        "--ros2-attachment",
        choices=["compact", "keyed"],
        default="compact",
        help="compact: rmw_zenoh 0.2.4+ (Jazzy), 0.6+ (Kilted, Rolling); keyed: Jazzy's "
        "0.2.0 to 0.2.3",
    )
    parser.add_argument(
        "--one-link",
        action="store_true",
        help="one TCP connection per peer for every priority, not two (for a peer that admits "
        "one only, such as a Zenoh router with its default max_links)",
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
        choices=["block", "drop"],
        default="block",
        help="block (default): a slow link takes the newest value when it can carry one; drop: "
        f"Zenoh drops payloads of {BIG_PAYLOAD} bytes or more that wait (to importers on links "
        "of different speeds: the slowest then sets no one's pace)",
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


def run_bridge(args: argparse.Namespace) -> int:
    # Here, not at the top: `shared-object --help` builds this command's parser without loading
    # numpy or Zenoh.
    from .._errors import InvalidArgumentError
    from ..bridge.core import Bridge, parse_rate_rule
    from ..bridge.encoding import parse_rule
    from ..bridge.session import _zenoh, build_config

    if not (args.export or args.imports or args.ros2_export or args.ros2_import):
        print(
            "error: nothing to do: give --export, --import, --ros2-export or --ros2-import",
            file=sys.stderr,
        )
        return 2
    ros2_side = None
    if args.ros2_export or args.ros2_import:
        from ..bridge import ros2 as ros2_bridge
    try:
        encodings = [parse_rule(text) for text in args.encode]
        max_rates = [parse_rate_rule(text) for text in args.max_rate]
        if args.ros2_export or args.ros2_import:
            ros2_exports = [ros2_bridge.parse_export(t) for t in args.ros2_export]
            ros2_imports = [ros2_bridge.parse_import(t) for t in args.ros2_import]
            ros2_domain = ros2_bridge.domain_id(args.ros2_domain)
        config = build_config(
            listen=args.listen,
            connect=args.connect,
            config_file=args.config,
            tls=tuple(args.tls) if args.tls else None,
            zenoh_shm=args.zenoh_shm,
            link_rate_mbit=args.link_rate,
            priority_links=not args.one_link,
            router=args.router,
        )
    except InvalidArgumentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    zenoh = _zenoh()
    signal.signal(signal.SIGTERM, _interrupt)
    session = zenoh.open(config)
    bridge = Bridge(
        session,
        exports=args.export,
        imports=args.imports,
        prefix=args.prefix,
        congestion=args.congestion,
        mode=args.mode,
        encodings=encodings,
        max_rates=max_rates,
    )
    try:
        encoded = bridge.check_encodings()
    except InvalidArgumentError as exc:
        session.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bridge.start()
    if args.ros2_export or args.ros2_import:
        ros2_side = ros2_bridge.Ros2Side(
            bridge,
            exports=ros2_exports,
            imports=ros2_imports,
            domain=ros2_domain,
            frame_id=args.ros2_frame_id,
            attachment=args.ros2_attachment,
            node_name=args.ros2_node,
        )
        ros2_side.start()
        print(
            f"ros2: node {args.ros2_node} in domain {ros2_domain}: "
            + ", ".join(
                [f"{r.source} -> {r.topic}" for r in ros2_exports]
                + [f"{r.topic} -> {r.name}" for r in ros2_imports]
            ),
            flush=True,
        )
    print(
        f"bridge {bridge.source.hex()[:8]}: exporting {args.export or 'nothing'}, importing "
        f"{args.imports or 'nothing'} under {args.prefix!r}",
        flush=True,
    )
    for line in encoded:
        print(f"  {line}", flush=True)
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
        if ros2_side is not None:
            ros2_side.stop()
        bridge.stop()
        session.close()
    return 0


def _report(line: dict[str, Any], as_json: bool) -> None:
    from ..bridge.stats import format_report

    print(json.dumps(line) if as_json else format_report(line), flush=True)


__all__ = ["bridge_arguments", "run_bridge"]
