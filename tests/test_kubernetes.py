"""deploy/kubernetes/, checked offline: every manifest against the API's schemas, strictly (an
unknown field is an error, as `kubectl apply --validate=strict` would say), for the oldest
Kubernetes they need (1.29: native sidecars) and the newest the validator knows; then what the
schemas cannot see: /dev/shm in every container, names that must agree across manifests, and
commands and probes that really run. tests/integration/test_kubernetes_pods.py runs the Pods'
containers under Docker as the manifests describe them.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared_object import SharedObject
from shared_object.cli import parse

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
if not DEPLOY.is_dir():  # the image ships the package, tests and examples, not deploy/
    pytest.skip(f"{DEPLOY} is not here (inside the image, say)", allow_module_level=True)

yaml = pytest.importorskip("yaml", reason="pip install -e '.[integration]' (PyYAML)")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install -e '.[integration]' (kubernetes-validate)"
)

OLDEST, NEWEST = "1.29.0", kubernetes_validate.latest_version()
MANIFESTS = sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def resources() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in documents(path)]


def resource(kind: str, name: str) -> dict[str, Any]:
    [found] = [r for r in resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def pod_containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def deployments() -> list[dict[str, Any]]:
    return [r for r in resources() if r["kind"] == "Deployment"]


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(quantity[:-2]) * units[quantity[-2:]]


@pytest.mark.parametrize("version", [OLDEST, NEWEST])
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_strictly(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises with the path if not


def test_strict_validation_refuses_a_misspelt_field() -> None:
    robot = resource("Deployment", "robot")
    robot["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimt"] = "1Gi"
    with pytest.raises(kubernetes_validate.ValidationError, match="sizeLimt"):
        kubernetes_validate.validate(robot, NEWEST, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


@pytest.mark.parametrize("name", ["robot", "logger"])
def test_every_container_mounts_a_sized_memory_volume_at_dev_shm(name: str) -> None:
    deployment = resource("Deployment", name)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    limits = 0
    for container in pod_containers(deployment):
        [shm] = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory", container["name"]
        limits += memory_bytes(container["resources"]["limits"]["memory"])
    [size] = {volumes[m["name"]]["emptyDir"]["sizeLimit"] for m in pod_containers(deployment)[0]["volumeMounts"] if m["mountPath"] == "/dev/shm"}  # fmt: skip
    # The tmpfs holds the lesser of sizeLimit and the sum of the limits: let sizeLimit be it.
    assert limits >= memory_bytes(size)


def test_the_names_that_join_the_manifests_agree() -> None:
    robot, logger = resource("Deployment", "robot"), resource("Deployment", "logger")
    service, policy = resource("Service", "robot-bridge"), resource("NetworkPolicy", "robot-bridge")
    robot_labels = robot["spec"]["template"]["metadata"]["labels"]
    logger_labels = logger["spec"]["template"]["metadata"]["labels"]
    # The Service reaches the robot's bridge, on a port the bridge listens on.
    assert service["spec"]["selector"].items() <= robot_labels.items()
    [bridge] = [c for c in pod_containers(robot) if c["name"] == "bridge"]
    [port] = service["spec"]["ports"]
    [listened] = [p for p in bridge["ports"] if p["name"] == port["targetPort"]]
    assert f"tcp/0.0.0.0:{listened['containerPort']}" in bridge["command"]
    # The logger's bridge connects to that Service and port.
    [logger_bridge] = [c for c in pod_containers(logger) if c["name"] == "bridge"]
    assert f"tcp/{service['metadata']['name']}:{port['port']}" in logger_bridge["command"]
    # The logger runs on another node than the robot, and the robot admits it.
    [term] = logger["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= robot_labels.items()
    [rule] = policy["spec"]["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= logger_labels.items()
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= robot_labels.items()
    assert rule["ports"][0]["port"] == listened["containerPort"]


def commands() -> list[tuple[str, list[str]]]:
    return [
        (f"{d['metadata']['name']}/{c['name']}", c["command"])
        for d in deployments()
        for c in pod_containers(d)
    ]


@pytest.mark.parametrize(("where", "command"), commands(), ids=[w for w, _ in commands()])
def test_every_command_names_a_module_or_subcommand_that_accepts_its_arguments(
    where: str, command: list[str]
) -> None:
    if command[0] == "shared-object":
        parse(command[1:])  # SystemExit(2) on an unknown option
        return
    assert command[:2] == ["python3", "-m"], f"{where}: {shlex.join(command)}"
    module = command[2]
    assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
    # Parse the arguments as main() does, and stop there: argparse exits 2 on a bad one.
    result = subprocess.run([sys.executable, "-c", PARSE_ONLY, module, *command[3:]],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and "PARSED" in result.stdout, f"{where}: {result.stderr}"


PARSE_ONLY = """
import argparse, importlib, sys
class Parsed(Exception): pass
parse_args = argparse.ArgumentParser.parse_args
def parse_then_stop(self, args=None, namespace=None):
    parse_args(self, args, namespace)
    raise Parsed
argparse.ArgumentParser.parse_args = parse_then_stop
try:
    importlib.import_module(sys.argv[1]).main(sys.argv[2:])
except Parsed:
    print("PARSED")
"""


def probes() -> list[tuple[str, list[str]]]:
    found = []
    for deployment in deployments():
        for container in pod_containers(deployment):
            for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
                if kind in container:
                    found.append(
                        (f"{container['name']}.{kind}", container[kind]["exec"]["command"])
                    )
    return found


@pytest.mark.parametrize(("where", "command"), probes(), ids=[w for w, _ in probes()])
def test_every_probe_passes_for_a_live_object_and_fails_for_a_stale_or_missing_one(
    where: str, command: list[str], shm_name: str
) -> None:
    assert command[:2] == ["shared-object", "health"] and command[3] == "--max-age", command
    watched, max_age = command[2], float(command[4])
    probe = [sys.executable, "-m", "shared_object", "health", shm_name, "--max-age", command[4]]
    assert subprocess.run(probe, timeout=60).returncode != 0  # missing
    with SharedObject(shm_name, data=np.zeros(3)) as obj:
        obj.assign(np.ones(3))
        assert subprocess.run(probe, timeout=60).returncode == 0, where  # just changed
        time.sleep(max_age + 0.5)
        assert subprocess.run(probe, timeout=60).returncode != 0, where  # stale
        obj.unlink()
    assert watched.startswith("demo-")
