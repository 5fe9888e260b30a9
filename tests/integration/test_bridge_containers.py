"""The bridge between two "hosts" made of containers: each host is a holder container owning an
IPC namespace (and /dev/shm) of its own, its workloads join that namespace with no network at all,
and its bridge joins it too and is the only container on the Docker network between the hosts.
Nothing crosses but what the bridges carry, over TCP (or TLS).
"""

from __future__ import annotations

import json
import re
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from certificates import make_certificates, require_openssl
from dockertools import LABEL, SESSION_ID, Containers, finish, wait_for_output

pytestmark = pytest.mark.docker

DEADLINE = 90.0


def script(code: str) -> str:
    return textwrap.dedent(code).strip()


class DockerHost:
    """One pretend host: its holder, the bridge, and the workloads, all in the holder's IPC."""

    def __init__(self, containers: Containers, network: Any, name: str) -> None:
        self.containers = containers
        self.network = network
        self.name = f"so-{name}-{uuid.uuid4().hex[:8]}"  # the bridge's DNS name on the network
        self.holder = containers.run(
            command=["sleep", "infinity"],
            ipc_mode="shareable",
            shm_size="256m",
            network_mode="none",
        )

    def bridge(self, *args: str, **kwargs: Any) -> Any:
        return self.containers.run(
            command=["shared-object", "bridge", "--json", *args],
            ipc_mode=f"container:{self.holder.id}",
            network=self.network.name,
            name=self.name,
            **kwargs,
        )

    def python(self, code: str) -> Any:
        return self.containers.run(
            script(code), ipc_mode=f"container:{self.holder.id}", network_mode="none"
        )

    def run(self, code: str) -> str:
        code_, out = finish(self.python(code), timeout=DEADLINE)
        assert code_ == 0, out
        return out


@pytest.fixture
def two_hosts(docker_client: Any, containers: Containers) -> Iterator[Callable[[str], DockerHost]]:
    network = docker_client.networks.create(
        f"so-link-{uuid.uuid4().hex[:8]}", driver="bridge", labels={LABEL: SESSION_ID}
    )

    def make(name: str) -> DockerHost:
        return DockerHost(containers, network, name)

    try:
        yield make
    finally:
        containers.cleanup()  # the network can go only once its containers have
        network.remove()


def last_stats(bridge: Any) -> dict[str, Any]:
    lines = [line for line in bridge.logs().decode().splitlines() if line.startswith("{")]
    assert lines, bridge.logs().decode()
    return dict(json.loads(lines[-1]))


def stats_until(bridge: Any, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        lines = [line for line in bridge.logs().decode().splitlines() if line.startswith("{")]
        if lines and done(stats := json.loads(lines[-1])):
            return dict(stats)
        time.sleep(0.2)
    pytest.fail(f"the bridge never reported what was expected:\n{bridge.logs().decode()[-3000:]}")


# Host A's sensor: numbered, checksummed 480x848x3 frames at 30 Hz; prints each action it gets.
SENSOR = """
    import time, helpers
    from shared_object import SharedObject
    frames = SharedObject.create("cam", helpers.numbered_frame(0))
    action = SharedObject.create("action", {"seq": -1})
    print("READY", flush=True)
    number = 0
    while True:
        number += 1
        frames.assign(helpers.numbered_frame(number))
        if action.modified:
            print("ACTION", action.fetch()["seq"], flush=True)
        time.sleep(1 / 30)
"""

# Host B's policy: checks every frame whole and never older than the one before, answers with
# its number, and prints what it saw.
POLICY = """
    import helpers
    from shared_object import SharedObject
    frames = SharedObject.attach("cam", timeout=60)
    action = SharedObject.create("action", {"seq": -1})   # B's own, exported to A's sensor
    last = -1
    while True:
        if not frames.wait(1):
            continue
        number = helpers.frame_number(frames.fetch())
        if number < 0:
            print("TORN", flush=True)
        elif number < last:
            print("OLDER", number, "after", last, flush=True)
        last = max(last, number)
        action.assign({"seq": number})
        print("FRAME", number, flush=True)
"""


def frames_seen(policy: Any) -> list[int]:
    return [int(n) for n in re.findall(r"^FRAME (\d+)$", policy.logs().decode(), re.M)]


def wait_for_frames_past(policy: Any, number: int) -> None:
    """Until the policy has seen a frame numbered above ``number``; fail if it never does."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if max(frames_seen(policy), default=-1) > number:
            return
        time.sleep(0.2)
    pytest.fail(f"no frame after {number} arrived:\n{policy.logs().decode()[-3000:]}")


def assert_never_torn_nor_older(policy: Any) -> None:
    out = policy.logs().decode()
    assert "TORN" not in out and "OLDER" not in out, out[-3000:]


def sensor_and_policy(
    two_hosts: Callable[[str], DockerHost],
) -> tuple[DockerHost, DockerHost, Any, Any, Any, Any]:
    """The demo's shape across two hosts: (a, b, sensor, policy, bridge a, bridge b)."""
    a, b = two_hosts("a"), two_hosts("b")
    sensor = a.python(SENSOR)
    wait_for_output(sensor, "READY")
    bridge_a = a.bridge("--export", "cam", "--import", "action", "--listen", "tcp/0.0.0.0:7447")
    bridge_b = b.bridge("--import", "cam", "--export", "action", "--connect", f"tcp/{a.name}:7447")
    policy = b.python(POLICY)
    wait_for_frames_past(policy, 0)
    return a, b, sensor, policy, bridge_a, bridge_b


def test_frames_cross_whole_and_the_action_comes_back(
    two_hosts: Callable[[str], DockerHost],
) -> None:
    _, _, sensor, policy, bridge_a, bridge_b = sensor_and_policy(two_hosts)
    first = max(frames_seen(policy))
    wait_for_frames_past(policy, first + 60)
    assert_never_torn_nor_older(policy)
    logs = wait_for_output(sensor, "ACTION", count=20)
    answered = [int(n) for n in re.findall(r"^ACTION (\d+)$", logs, re.M)]
    assert answered == sorted(answered) and set(answered) <= set(frames_seen(policy))
    stats = stats_until(bridge_b, lambda s: s["totals"]["received"] >= 60)["totals"]
    assert stats["malformed"] == 0 and stats["errors"] == 0
    stats_until(bridge_a, lambda s: s["totals"]["sent"] >= 60)  # a line a second: lags behind


def test_a_trigger_crosses_and_a_late_joiner_gets_the_current_value(
    two_hosts: Callable[[str], DockerHost],
) -> None:
    a, b = two_hosts("a"), two_hosts("b")
    a.run("""
        import numpy as np
        from shared_object import SharedObject
        SharedObject("estop").close()                                  # trigger-only
        SharedObject("gains", data=np.arange(6.0)).close()
    """)
    bridge_a = a.bridge("--export", "estop", "gains", "--listen", "tcp/0.0.0.0:7447")
    stats_until(bridge_a, lambda s: s["totals"]["sent"] >= 2)  # long before B exists
    time.sleep(1.0)
    b.bridge("--import", "estop", "gains", "--connect", f"tcp/{a.name}:7447")
    waiter = b.python("""
        from shared_object import SharedObject
        print("GAINS", SharedObject.attach("gains", timeout=60).fetch().tolist(), flush=True)
        stop = SharedObject.attach("estop", timeout=60)
        stop.fetch()
        print("READY", flush=True)
        print("WOKE", stop.wait(60), flush=True)
    """)
    logs = wait_for_output(waiter, "READY", timeout=DEADLINE)
    assert "GAINS [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]" in logs
    a.run("from shared_object import SharedObject; SharedObject.attach('estop').trigger()")
    code, out = finish(waiter, timeout=DEADLINE)
    assert code == 0 and "WOKE True" in out, out


def test_the_flow_survives_a_network_cut_and_killed_bridges(
    two_hosts: Callable[[str], DockerHost],
) -> None:
    _, _, _, policy, bridge_a, bridge_b = sensor_and_policy(two_hosts)
    for fault in ("cut", "kill importer", "kill exporter"):
        if fault == "cut":
            link = bridge_b.client.networks.get(bridge_b.attrs["HostConfig"]["NetworkMode"])
            link.disconnect(bridge_b)
            time.sleep(5.0)  # longer than the 3 s lease: both sides notice the link is gone
            stalled = max(frames_seen(policy))
            time.sleep(1.0)
            assert max(frames_seen(policy)) == stalled, "frames arrived over a cut link"
            link.connect(bridge_b)
        else:
            bridge = bridge_b if fault == "kill importer" else bridge_a
            bridge.kill()  # SIGKILL: no goodbye to the peer, no cleanup
            time.sleep(1.0)
            bridge.start()
        wait_for_frames_past(policy, max(frames_seen(policy)) + 30)  # 1 s of frames after it
    assert_never_torn_nor_older(policy)
    assert last_stats(bridge_b)["totals"]["malformed"] == 0


def test_mutual_tls_refuses_a_stranger(
    two_hosts: Callable[[str], DockerHost], tmp_path: Path
) -> None:
    require_openssl()
    a, b, c = two_hosts("a"), two_hosts("b"), two_hosts("c")
    ours = make_certificates(tmp_path, "lab-ca", ["bridge-a", "bridge-b"], hosts=[a.name])
    theirs = make_certificates(tmp_path, "other-ca", ["stranger"], hosts=[c.name])
    inside = lambda paths: [f"/certs/{Path(p).name}" for p in paths]  # noqa: E731
    certs = {str(tmp_path): {"bind": "/certs", "mode": "ro"}}
    a.run("""
        import numpy as np
        from shared_object import SharedObject
        SharedObject("secret", data=np.arange(4.0)).close()
    """)
    a.bridge(
        "--export", "secret", "--listen", "tls/0.0.0.0:7447",
        "--tls", *inside(ours["bridge-a"]), volumes=certs,
    )  # fmt: skip
    # The stranger trusts our CA (it would accept bridge-a), but its own certificate is another CA's.
    stranger = c.bridge(
        "--import", "secret", "--connect", f"tls/{a.name}:7447",
        "--tls", *inside((ours["bridge-a"][0], *theirs["stranger"][1:])), volumes=certs,
    )  # fmt: skip
    friend = b.bridge(
        "--import", "secret", "--connect", f"tls/{a.name}:7447",
        "--tls", *inside(ours["bridge-b"]), volumes=certs,
    )  # fmt: skip
    out = b.run("""
        from shared_object import SharedObject
        print(SharedObject.attach("secret", timeout=60).fetch().tolist())
    """)
    assert out.strip() == "[0.0, 1.0, 2.0, 3.0]"
    stats_until(friend, lambda s: s["totals"]["received"] >= 1)
    time.sleep(3.0)  # the stranger had as long as the friend, and more
    assert last_stats(stranger)["totals"]["received"] == 0
    out = c.run("""
        from shared_object import SharedObject, SegmentNotFoundError
        try:
            SharedObject.attach("secret")
        except SegmentNotFoundError:
            print("ABSENT")
    """)
    assert "ABSENT" in out
