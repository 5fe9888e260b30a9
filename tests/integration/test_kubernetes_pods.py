"""deploy/kubernetes/'s Pods, run under Docker as a kubelet would run them.

No cluster here, so each Pod is translated, field by field, into what its runtime would do:
a "pause" container owns the Pod's network namespace (and carries the Service's name as a DNS
alias), every container joins it, the `emptyDir` with `medium: Memory` is one tmpfs volume of
`sizeLimit` mounted at /dev/shm in each container, and each container runs the manifest's
command with its securityContext (uid, read-only root, no capabilities, no privilege
escalation) and memory limit. What is tested is then the manifests' own commands: the robot's
policy answers its sensor, their probes pass, and the logger on "another node" records what
its bridge imports.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from dockertools import LABEL, ROOT, SESSION_ID, Containers, wait_for_output

pytestmark = pytest.mark.docker

yaml = pytest.importorskip("yaml", reason="pip install -e '.[integration]' (PyYAML)")

DEPLOY = ROOT / "deploy" / "kubernetes"
DEADLINE = 120.0


def quantity_bytes(quantity: str) -> int:
    return int(quantity[:-2]) * {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[quantity[-2:]]


class DockerPod:
    """One Deployment's Pod template, started as containers; ``paths`` backs other volumes."""

    def __init__(
        self,
        docker_client: Any,
        containers: Containers,
        network: Any,
        deployment: dict[str, Any],
        aliases: list[str],
        paths: dict[str, str],
    ) -> None:
        from docker.types import Mount

        spec = deployment["spec"]["template"]["spec"]
        security = spec["securityContext"]
        self.volumes: list[Any] = []
        sources: dict[str, tuple[str, str]] = {}  # volume name -> (docker source, mount type)
        for volume in spec["volumes"]:
            if "emptyDir" in volume:
                assert volume["emptyDir"]["medium"] == "Memory"
                size = quantity_bytes(volume["emptyDir"]["sizeLimit"])
                made = docker_client.volumes.create(
                    name=f"so-pod-{uuid.uuid4().hex[:8]}",
                    driver="local",
                    driver_opts={"type": "tmpfs", "device": "tmpfs", "o": f"size={size},mode=0777"},
                    labels={LABEL: SESSION_ID},
                )
                self.volumes.append(made)
                sources[volume["name"]] = (made.name, "volume")
            else:
                sources[volume["name"]] = (paths[volume["name"]], "bind")
        self.pause = containers.run(command=["sleep", "infinity"], network=network.name)
        network.disconnect(self.pause)
        network.connect(self.pause, aliases=aliases)
        self.containers: dict[str, Any] = {}
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            context = container.get("securityContext", {})
            self.containers[container["name"]] = containers.run(
                command=container["command"],
                network_mode=f"container:{self.pause.id}",
                user=f"{security['runAsUser']}:{security['runAsGroup']}",
                group_add=[str(security["fsGroup"])],
                read_only=context.get("readOnlyRootFilesystem", False),
                cap_drop=context.get("capabilities", {}).get("drop", []),
                security_opt=[] if context.get("allowPrivilegeEscalation", True) else ["no-new-privileges"],
                mem_limit=quantity_bytes(container["resources"]["limits"]["memory"]),
                mounts=[
                    # no_copy: an emptyDir starts empty, with its own mode; Docker would
                    # otherwise copy the image's /dev/shm (root, 0755) into the volume.
                    Mount(m["mountPath"], source, type=kind, no_copy=kind == "volume")
                    for m in container["volumeMounts"]
                    for source, kind in [sources[m["name"]]]
                ],
                environment={e["name"]: e["value"] for e in container.get("env", [])},
            )  # fmt: skip

    def probe(self, name: str, kind: str, container: dict[str, Any]) -> tuple[int, str]:
        code, out = self.containers[name].exec_run(container[kind]["exec"]["command"])
        return int(code), out.decode(errors="replace")

    def remove_volumes(self) -> None:
        for volume in self.volumes:
            volume.remove(force=True)


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kind" in doc and "metadata" in doc:
                found[doc["kind"], doc["metadata"]["name"]] = doc
    return found


def test_the_robot_and_the_logger_run_as_their_manifests_say(
    docker_client: Any, containers: Containers, tmp_path: Path
) -> None:
    resources = manifests()
    robot, logger = resources["Deployment", "robot"], resources["Deployment", "logger"]
    service = resources["Service", "robot-bridge"]["metadata"]["name"]
    recordings = str(tmp_path)
    tmp_path.chmod(0o777)  # a PersistentVolume the Pod's fsGroup can write
    network = docker_client.networks.create(
        f"so-cluster-{uuid.uuid4().hex[:8]}", labels={LABEL: SESSION_ID}
    )
    pods: list[DockerPod] = []
    try:
        pods.append(DockerPod(docker_client, containers, network, robot, [service], {}))
        pods.append(
            DockerPod(docker_client, containers, network, logger, [], {"recordings": recordings})
        )
        robot_pod, logger_pod = pods
        policy = robot_pod.containers["policy"]
        wait_for_output(policy, "frames/s", timeout=DEADLINE, count=3)
        logs = wait_for_output(robot_pod.containers["sensor"], "round trips/s", timeout=DEADLINE)
        assert re.search(r"\[sensor\] [1-9]\d* round trips/s", logs), logs[-2000:]

        # The probes, as the kubelet would exec them.
        for container in robot["spec"]["template"]["spec"]["containers"]:
            for kind in ("startupProbe", "livenessProbe"):
                code, out = robot_pod.probe(container["name"], kind, container)
                assert code == 0, f"{container['name']}.{kind}: {out}"

        # The logger records what its bridge imported, from another "node".
        recorder = logger_pod.containers["recorder"]
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            progress = re.findall(
                r"recording: (\d+) objects, (\d+) messages", recorder.logs().decode()
            )
            if progress and int(progress[-1][0]) >= 3 and int(progress[-1][1]) >= 30:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the logger recorded too little:\n{recorder.logs().decode()[-3000:]}")
        recorder.stop(timeout=20)  # SIGTERM: the file gets its index and footer
        assert recorder.wait(timeout=30)["StatusCode"] == 0, recorder.logs().decode()[-3000:]

        from shared_object.recording import Recording

        [path] = Path(recordings).glob("demo-*.mcap")
        recording = Recording(str(path))
        assert not recording.truncated
        assert {"demo-frame", "demo-action", "demo-stop"} <= set(recording.topics())
        for pod in pods:
            for name, container in pod.containers.items():
                container.reload()
                if name != "recorder":
                    assert container.status == "running", (
                        f"{name}: {container.logs().decode()[-2000:]}"
                    )
                    assert container.attrs["RestartCount"] == 0
    finally:
        containers.cleanup()
        network.remove()
        for pod in pods:
            pod.remove_volumes()
