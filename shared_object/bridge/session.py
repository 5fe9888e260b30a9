"""The Zenoh session a bridge opens: its configuration, from the command line or a Zenoh file.

Defaults, each overridable: peer mode; no multicast or gossip scouting (a bridge talks to the
endpoints it is given, nothing else); Zenoh's own shared-memory transport off (processes on one
host already share /dev/shm, and on loopback it would carry the traffic past the network path the
bridge exists for); timestamps on (the late joiners' cache needs them); a 3 s lease, so a cut
link is noticed in seconds and re-established once the network is back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from .._errors import InvalidArgumentError
from .._extras import require


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
) -> Any:
    """A ``zenoh.Config``: the file's (or the defaults), with the endpoints and TLS given here.

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
    return config


__all__ = ["build_config"]
