"""Test certificates for the bridge's mutual TLS: a CA, and keys and certificates it signed.

Made with the openssl command line, which the test suite's machines have (tests/run.sh installs
it under CI); ``require_openssl`` skips, or fails under CI=true, where it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def require_openssl() -> None:
    if shutil.which("openssl") is not None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("openssl is missing: it makes the certificates of the TLS tests")
    pytest.skip("openssl is missing: install it (apt-get install openssl) to run the TLS tests")


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_certificates(
    directory: Path, ca_name: str, names: list[str], hosts: list[str] | None = None
) -> dict[str, tuple[str, str, str]]:
    """A CA, and for each name a key and certificate it signed: name -> (ca, cert, key) paths.

    The certificates name ``hosts`` (DNS names; default localhost) and 127.0.0.1. The directory and
    every file in it are world-readable, so a container's unprivileged user can read it: test keys only.
    """
    ca_key, ca_cert = directory / f"{ca_name}.key", directory / f"{ca_name}.pem"
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca_name}"),
        *("-keyout", ca_key, "-out", ca_cert),
    )
    alt_names = ",".join([*(f"DNS:{h}" for h in hosts or ["localhost"]), "IP:127.0.0.1"])
    made = {}
    for name in names:
        key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        extensions = directory / f"{name}.ext"
        extensions.write_text(f"subjectAltName={alt_names}\n")
        _openssl(
            *("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}"),
            *("-keyout", key, "-out", csr),
        )
        _openssl(
            *("x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial"),
            *("-out", cert, "-days", "2", "-extfile", extensions),
        )
        made[name] = (str(ca_cert), str(cert), str(key))
    for path in directory.iterdir():
        path.chmod(0o644)
    directory.chmod(0o755)
    return made
