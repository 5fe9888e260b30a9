"""Cross-container proofs, driven through docker-py.

The donor runs with ``ipc_mode="shareable"`` and the others join it with
``ipc_mode="container:<id>"``: docker-py's spelling of compose's ``ipc: "service:shm"``. In most
tests the donor is the producer itself, which is enough while nobody restarts; compose.yaml gives
the namespace to a holder that does nothing else, and the restart tests below show why.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
import time
from typing import Any

import helpers
import numpy as np
import pytest
from dockertools import Containers, finish, wait_for_output

from shared_object import SharedObject

pytestmark = pytest.mark.docker


def script(code: str) -> str:
    return textwrap.dedent(code).strip()


def producer(containers: Containers, code: str, **kwargs: Any) -> Any:
    """A donor container (shareable IPC) that runs ``code`` and prints READY when set up."""
    container = containers.run(
        script(code), ipc_mode="shareable", shm_size=kwargs.pop("shm_size", "256m"), **kwargs
    )
    wait_for_output(container, "READY")
    return container


def joiner(containers: Containers, donor: Any, code: str, **kwargs: Any) -> Any:
    return containers.run(script(code), ipc_mode=f"container:{donor.id}", **kwargs)


def test_fetch_of_an_array_written_in_another_container(containers: Containers) -> None:
    donor = producer(
        containers,
        """
        import time, helpers
        from shared_object import SharedObject
        obj = SharedObject.create("frame", helpers.checksummed_frame(42), mode=0o666)
        print("READY", flush=True)
        time.sleep(120)
    """,
    )
    reader = joiner(
        containers,
        donor,
        """
        import helpers
        from shared_object import SharedObject
        frame = SharedObject.attach("frame", timeout=30).fetch()
        print("OK" if helpers.frame_ok(frame) else "TORN", int(frame[0, 0, 0]), frame.shape)
    """,
    )
    code, out = finish(reader)
    expected = helpers.checksummed_frame(42)
    assert code == 0, out
    assert f"OK {int(expected[0, 0, 0])} (480, 848, 3)" in out


def test_assign_from_the_consumer_is_seen_by_the_producer(containers: Containers) -> None:
    donor = producer(
        containers,
        """
        from shared_object import SharedObject
        obj = SharedObject.create("command", {"cmd": "idle", "gain": 0.0}, mode=0o666)
        print("READY", flush=True)
        assert obj.wait(60)
        print("GOT", obj.fetch(), flush=True)
    """,
    )
    writer = joiner(
        containers,
        donor,
        """
        from shared_object import SharedObject
        SharedObject.attach("command", timeout=30).assign({"cmd": "grasp", "gain": 2.5})
    """,
    )
    assert finish(writer)[0] == 0
    code, out = finish(donor)
    assert code == 0, out
    assert "GOT {'cmd': 'grasp', 'gain': 2.5}" in out


def test_trigger_wakes_a_waiter_in_another_container_promptly(containers: Containers) -> None:
    donor = producer(
        containers,
        """
        import time
        from shared_object import SharedObject
        trigger = SharedObject.create("go", None, mode=0o666)
        print("READY", flush=True)
        time.sleep(120)
    """,
    )
    waiter = joiner(
        containers,
        donor,
        """
        import time
        from shared_object import SharedObject
        go = SharedObject.attach("go", timeout=30)
        print("WAITING", flush=True)
        woke = go.wait(60)
        late_ms = (time.time_ns() - go.mtime) / 1e6
        print("WOKE", woke, go.triggered, f"{late_ms:.3f}", flush=True)
    """,
    )
    wait_for_output(waiter, "WAITING")
    time.sleep(0.5)  # the waiter is asleep in the kernel by now
    trigger = joiner(
        containers,
        donor,
        """
        from shared_object import SharedObject
        SharedObject.attach("go", timeout=30).trigger()
    """,
    )
    assert finish(trigger)[0] == 0
    code, out = finish(waiter)
    assert code == 0, out
    woke, triggered, late_ms = out.split("WOKE", 1)[1].split()[:3]
    assert (woke, triggered) == ("True", "True")
    # A lost wake-up would show as ~1000 ms (the waiter's re-announcement slice); the futex wake is sub-ms.
    assert float(late_ms) < 500, out


def test_dynamic_object_resized_in_one_container_and_read_in_the_other(
    containers: Containers,
) -> None:
    donor = producer(
        containers,
        """
        import numpy as np
        from shared_object import SharedDynamicObject, SharedObject
        obj = SharedDynamicObject.create("dyn", "start", mode=0o666)
        ack = SharedObject.create("dyn-ack", None, mode=0o666)  # the reader's "next, please"
        print("READY", flush=True)
        assert ack.wait(60) and ack.triggered  # the reader attached and asked for the next value
        for i, shape in enumerate([(10,), (480, 848, 3), (1000, 1000), (3,)]):
            obj.assign(np.full(shape, i, np.float32))
            assert ack.wait(60) and ack.triggered
        print("DONE", flush=True)
    """,
    )
    reader = joiner(
        containers,
        donor,
        """
        from shared_object import SharedDynamicObject, SharedObject
        obj = SharedDynamicObject.attach("dyn", timeout=30)
        ack = SharedObject.attach("dyn-ack", timeout=30)  # its own trigger object: a handle sees its own triggers
        assert obj.fetch() == "start"
        ack.trigger()
        for _ in range(4):
            assert obj.wait(60)
            value = obj.fetch()
            print("SHAPE", value.shape, value.dtype, float(value.min()), float(value.max()), flush=True)
            ack.trigger()
    """,
    )
    code, out = finish(reader)
    assert code == 0, out
    assert "SHAPE (10,) float32 0.0 0.0" in out
    assert "SHAPE (480, 848, 3) float32 1.0 1.0" in out
    assert "SHAPE (1000, 1000) float32 2.0 2.0" in out
    assert "SHAPE (3,) float32 3.0 3.0" in out
    assert finish(donor)[0] == 0


def test_compound_and_sapien_pose_values_cross_containers(containers: Containers) -> None:
    donor = producer(
        containers,
        """
        import time, numpy as np, sapien
        from shared_object import SharedObject
        value = {"pose": sapien.Pose([1, 2, 3], [0, 1, 0, 0]), "joints": np.arange(7.0),
                 "meta": ("arm", [1, {"ok": True}], {3, 4}), "img": np.ones((4, 4, 3), np.uint8)}
        SharedObject.create("robot", value, mode=0o666)
        print("READY", flush=True)
        time.sleep(120)
    """,
    )
    reader = joiner(
        containers,
        donor,
        """
        from shared_object import SharedObject
        v = SharedObject.attach("robot", timeout=30).fetch()
        print("POSE", v["pose"].p.tolist(), v["pose"].q.tolist())
        print("REST", v["joints"].sum(), v["meta"], int(v["img"].sum()), type(v["pose"]).__module__)
    """,
    )
    code, out = finish(reader)
    assert code == 0, out
    assert "POSE [1.0, 2.0, 3.0] [0.0, 1.0, 0.0, 0.0]" in out
    assert "REST 21.0 ('arm', [1, {'ok': True}], {3, 4}) 48 sapien" in out


def test_bind_mounted_shm_directory_shared_by_two_containers(containers: Containers) -> None:
    """The other documented way: the same host tmpfs directory mounted as /dev/shm in both (no shared IPC)."""
    shared = tempfile.mkdtemp(prefix="so-test-bind-", dir="/dev/shm")
    os.chmod(shared, 0o1777)
    try:
        mount = {shared: {"bind": "/dev/shm", "mode": "rw"}}
        donor = containers.run(
            script("""
            import time, numpy as np
            from shared_object import SharedObject
            SharedObject.create("bound", np.arange(1000.0), mode=0o666)
            print("READY", flush=True)
            time.sleep(120)
        """),
            volumes=mount,
        )
        wait_for_output(donor, "READY")
        reader = containers.run(
            script("""
            from shared_object import SharedObject
            print("SUM", SharedObject.attach("bound", timeout=30).fetch().sum())
        """),
            volumes=mount,
        )
        code, out = finish(reader)
        assert code == 0, out
        assert "SUM 499500.0" in out
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_host_process_shares_with_a_container(containers: Containers, shm_name: str) -> None:
    """A process on the host and a container in the host's IPC namespace (the only use of ipc: host)."""
    with SharedObject.create(shm_name, np.arange(10), mode=0o666) as obj:
        reader = containers.run(
            script(f"""
            from shared_object import SharedObject
            obj = SharedObject.attach({shm_name!r}, timeout=30)
            print("SUM", obj.fetch().sum(), flush=True)
            obj.assign(obj.fetch() * 2)
        """),
            ipc_mode="host",
        )
        code, out = finish(reader)
        assert code == 0, out
        assert "SUM 45" in out
        assert obj.modified and obj.fetch().sum() == 90


def test_consumer_without_shared_ipc_gets_the_hint_not_a_hang(containers: Containers) -> None:
    donor = producer(
        containers,
        """
        import time
        from shared_object import SharedObject
        SharedObject.create("lonely", 1, mode=0o666)
        print("READY", flush=True)
        time.sleep(120)
    """,
    )
    del donor
    stranger = containers.run(
        script("""
        from shared_object import SharedObject, SegmentNotFoundError
        try:
            SharedObject.attach("lonely", timeout=2)
        except SegmentNotFoundError as exc:
            print("NOTFOUND", exc)
            raise SystemExit(3)
        print("ATTACHED")
    """)
    )
    code, out = finish(stranger)
    assert code == 3, out
    assert "NOTFOUND" in out and "share an IPC namespace" in out and "after waiting 2 s" in out


def test_segment_larger_than_shm_size_fails_clearly_not_with_sigbus(containers: Containers) -> None:
    container = containers.run(
        script("""
        import numpy as np
        from shared_object import SharedObject, OutOfSharedMemoryError
        try:
            SharedObject.create("huge", np.zeros((4, 1024, 1024), np.uint8))  # 2 slots x 4 MiB > 4 MiB
        except OutOfSharedMemoryError as exc:
            print("REFUSED", exc)
            raise SystemExit(4)
    """),
        shm_size="4m",
    )
    code, out = finish(container)
    assert code == 4, out  # not 135 (SIGBUS)
    assert "REFUSED" in out and "shm_size" in out and "asked for 8.0 MiB" in out


def test_permissions_across_uids(containers: Containers) -> None:
    donor = producer(
        containers,
        """
        import time
        from shared_object import SharedObject
        SharedObject.create("private", 1)               # default mode 0o600, owned by root
        SharedObject.create("public", 2, mode=0o666)
        print("READY", flush=True)
        time.sleep(120)
    """,
        user="0",
    )
    reader = joiner(
        containers,
        donor,
        """
        from shared_object import SharedObject, SegmentPermissionError
        print("PUBLIC", SharedObject.attach("public").fetch())
        try:
            SharedObject.attach("private")
        except SegmentPermissionError as exc:
            print("DENIED", exc)
    """,
        user="10001",
    )
    code, out = finish(reader)
    assert code == 0, out
    assert "PUBLIC 2" in out
    assert "DENIED" in out and "uid 0" in out and "mode=0o666" in out


def test_consumer_survives_a_producer_killed_mid_stream(containers: Containers) -> None:
    donor = producer(
        containers,
        """
        import helpers
        from shared_object import SharedObject
        obj = SharedObject.create("stream", helpers.checksummed_frame(0), mode=0o666)
        frames = [helpers.checksummed_frame(i) for i in range(1, 9)]
        print("READY", flush=True)
        i = 0
        while True:
            obj.assign(frames[i % 8])
            i += 1
    """,
    )
    consumer = joiner(
        containers,
        donor,
        """
        import time, helpers
        from shared_object import SharedObject
        obj = SharedObject.attach("stream", timeout=30)
        bad = reads = 0
        t_end = time.monotonic() + 8
        while time.monotonic() < t_end:
            frame = obj.fetch()
            reads += 1
            bad += not helpers.frame_ok(frame)
            if reads == 200:
                print("STREAMING", flush=True)
        print("READS", reads, "TORN", bad, flush=True)
    """,
    )
    wait_for_output(consumer, "STREAMING")
    donor.kill(signal="SIGKILL")
    code, out = finish(consumer)
    assert code == 0, out
    reads, torn = out.split("READS")[1].split()[0], out.split("TORN")[1].split()[0]
    assert int(torn) == 0 and int(reads) > 200, out


# A producer that a restart policy brings back after a crash: it attaches to its object if one is
# there (and continues its count), else creates it.
COUNTING_PRODUCER = """
    import time
    from shared_object import SegmentNotFoundError, SharedObject
    try:
        obj = SharedObject.attach("count", timeout=0)
    except SegmentNotFoundError:
        obj = SharedObject.create("count", 0, mode=0o666)
    print("START", obj.fetch(), flush=True)
    while True:
        obj.assign(obj.fetch() + 1)
        time.sleep(0.01)
"""
COUNTING_CONSUMER = """
    from shared_object import SharedObject
    obj = SharedObject.attach("count", timeout=30)
    while True:
        print(f"GOT {obj.fetch()}" if obj.wait(0.5) else f"SILENT orphaned={obj.orphaned}", flush=True)
"""


def _crash_and_restart(producer: Any, consumer: Any) -> tuple[list[int], str, str]:
    """Kill the producer as a crash would and start it again, as a restart policy does. Returns,
    once the restarted producer has run for a second: the count each of its two runs started
    from, and the outputs of producer and consumer."""
    wait_for_output(consumer, "GOT")
    producer.kill(signal="SIGKILL")
    producer.start()  # with its ipc_mode: joining the same owner again, or owning a namespace anew
    wait_for_output(producer, "START", count=2)
    time.sleep(1.5)
    out = producer.logs().decode()
    starts = [int(line.split()[1]) for line in out.splitlines() if line.startswith("START")]
    return starts, out, consumer.logs().decode()


def test_a_producer_restarted_under_an_ipc_holder_serves_its_consumers_on(
    containers: Containers,
) -> None:
    """compose.yaml's layout: `shm` owns the IPC namespace, sensor and policy join it."""
    holder = containers.run(
        command=["sh", "-c", "trap 'exit 0' TERM INT; sleep infinity & wait"],
        ipc_mode="shareable",
        shm_size="64m",
    )
    counter = containers.run(script(COUNTING_PRODUCER), ipc_mode=f"container:{holder.id}")
    consumer = containers.run(script(COUNTING_CONSUMER), ipc_mode=f"container:{holder.id}")
    starts, out, seen = _crash_and_restart(counter, consumer)
    assert starts[0] == 0 and starts[1] > 0, (
        out
    )  # the restarted producer found its object, count and all
    last = int([line for line in seen.splitlines() if line.startswith("GOT")][-1].split()[1])
    assert last > starts[1] + 10, seen  # the consumer, never restarted, follows the new run
    holder.reload()
    assert holder.status == "running"


def test_a_producer_restarted_as_the_ipc_owner_leaves_its_consumers_behind(
    containers: Containers,
) -> None:
    """Why compose.yaml has the `shm` holder: Docker gives a container that owns its IPC
    namespace a new /dev/shm each time it starts. A consumer joined to it keeps the old one, and
    nothing in it changes: no new value, and its object is not even orphaned. (If this test
    fails, Docker no longer does this, and the holder is no longer needed.)"""
    counter = containers.run(script(COUNTING_PRODUCER), ipc_mode="shareable", shm_size="64m")
    consumer = containers.run(script(COUNTING_CONSUMER), ipc_mode=f"container:{counter.id}")
    starts, out, seen = _crash_and_restart(counter, consumer)
    assert starts == [0, 0], out  # the restarted producer found an empty /dev/shm
    assert seen.splitlines()[-1] == "SILENT orphaned=False", seen


def test_a_writer_killed_holding_the_lock_in_one_container_is_recovered_in_another(
    containers: Containers,
) -> None:
    """The writer lock is a robust mutex: when its holder dies, the kernel marks it, and the next
    writer takes it over (EOWNERDEAD) instead of waiting forever. Each container has its own PID
    namespace, so the two writers may even have the same thread id (both PID 1); the kernel's
    cleanup and glibc's takeover must not care.
    """
    donor = producer(
        containers,
        """
        import os, time, helpers
        from shared_object import SharedObject, testing
        obj = SharedObject.create("locked", helpers.checksummed_frame(1), mode=0o666)
        testing.writer_mutex(obj).acquire()  # frozen in the middle of an assign: it holds the writer lock
        print("READY pid", os.getpid(), flush=True)
        time.sleep(300)
    """,
    )
    writer = joiner(
        containers,
        donor,
        """
        import os, time, helpers
        from shared_object import SharedObject, Tuning, testing
        # fail by the test's deadline, not by the library's
        obj = SharedObject.attach("locked", timeout=30, tuning=Tuning(lock_timeout_s=120.0))
        print("ATTACHED pid", os.getpid(), "reads", helpers.frame_ok(obj.fetch()), flush=True)
        t0 = time.monotonic()
        obj.assign(helpers.checksummed_frame(2))  # blocks on the lock until the holder dies
        frame = obj.fetch()
        same = bool((frame == helpers.checksummed_frame(2)).all())
        print("RECOVERED", testing.writer_mutex(obj).owner_died_count, helpers.frame_ok(frame), same,
              f"after {time.monotonic() - t0:.1f} s", flush=True)
    """,
    )
    out = wait_for_output(writer, "ATTACHED")
    assert "reads True" in out, out  # readers never needed the lock
    time.sleep(1.5)
    writer.reload()
    assert writer.status == "running" and "RECOVERED" not in writer.logs().decode(), (
        "the lock did not hold the writer"
    )
    donor.kill(signal="SIGKILL")
    code, out = finish(writer)
    assert code == 0, out
    assert "RECOVERED 1 True True" in out, out


def test_unit_tests_pass_inside_the_image(containers: Containers) -> None:
    """The containerized test run: the unit and multi-process tests, inside the image."""
    container = containers.run(
        command=[
            "python3",
            "-m",
            "pytest",
            "tests",
            "--ignore=tests/integration",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        shm_size="1g",
    )
    code, out = finish(container, timeout=600)
    assert code == 0, out[-4000:]
    assert " passed" in out


def test_the_images_healthcheck_imports_only_what_it_needs(containers: Containers) -> None:
    """The HEALTHCHECK runs `shared-object health` every 2 s for the container's whole life: the
    command as installed in the image (its console script included) must not load argparse,
    numpy or re (the `re` of an old pip's console script was a third of its CPU)."""
    container = containers.run(
        command=[
            "sh",
            "-c",
            'python3 -c "from shared_object import SharedObject; '
            "SharedObject.create('hc-probe', 1)\" && "
            'python3 -X importtime "$(command -v shared-object)" health hc-probe',
        ],
        shm_size="64m",
    )
    code, out = finish(container)
    assert code == 0 and "healthy" in out, out
    imported = {
        line.rsplit("|", 1)[1].strip() for line in out.splitlines() if "import time:" in line
    }
    assert "shared_object.cli.health" in imported, out  # what was timed is the probe
    assert not imported & {"argparse", "numpy", "re"}, sorted(imported)


def test_gc_sees_handles_held_in_another_container(containers: Containers) -> None:
    """Liveness works without PIDs: a handle open in a container keeps gc on the host away."""
    import json
    import subprocess
    import sys

    shared = tempfile.mkdtemp(prefix="so-test-gc-", dir="/dev/shm")
    os.chmod(shared, 0o1777)
    host_env = {**os.environ, "SHARED_OBJECT_DIR": shared}

    def gc(*args: str) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, "-m", "shared_object", "gc", "--json", *args],
            capture_output=True,
            text=True,
            env=host_env,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    try:
        holder = containers.run(
            script("""
            import time
            from shared_object import SharedObject
            obj = SharedObject.create("held", 1, mode=0o666)
            print("READY", flush=True)
            time.sleep(120)
        """),
            volumes={shared: {"bind": "/dev/shm", "mode": "rw"}},
        )
        wait_for_output(holder, "READY")
        assert [k["name"] for k in gc()["kept"]] == ["held"]  # held in the container: kept
        holder.kill(signal="SIGKILL")
        holder.wait(timeout=60)
        assert [r["name"] for r in gc()["removed"]] == ["held"]  # its holder died: stale, removed
        assert not os.path.exists(os.path.join(shared, "held"))
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_doctor_in_a_default_container_warns_about_shm_size(containers: Containers) -> None:
    container = containers.run(
        command=["shared-object", "doctor"]
    )  # Docker's default: 64 MiB /dev/shm
    code, out = finish(container)
    assert code == 0, out
    assert "[warn ] shm size: 64 MiB" in out and "shm_size" in out
    assert "in a container" in out and "ipc:[" in out


def test_doctor_tells_joined_containers_from_strangers(containers: Containers) -> None:
    import json
    import re

    def ipc_of(output: str) -> str:
        detail = next(f["detail"] for f in json.loads(output) if f["check"] == "ipc namespace")
        return re.search(r"ipc:\[\d+\]", detail).group(0)  # type: ignore[union-attr]

    donor = producer(containers, "import time; print('READY', flush=True); time.sleep(120)")
    donor_ipc = ipc_of(donor.exec_run(["shared-object", "doctor", "--json"]).output.decode())
    joined = containers.run(
        command=["shared-object", "doctor", "--json"], ipc_mode=f"container:{donor.id}"
    )
    stranger = containers.run(command=["shared-object", "doctor", "--json"])
    assert ipc_of(finish(joined)[1]) == donor_ipc
    assert ipc_of(finish(stranger)[1]) != donor_ipc
