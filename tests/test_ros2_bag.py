"""rosbag2 files: ``record --ros2`` writes what rosbag2's MCAP storage writes, read back here by
another library's reader (rosbags' AnyReader, the one ROS 2 users script with); ``play`` plays
what another rosbag2 writer (rosbags') wrote, into objects; a file's bad parts are refused with
their reason and cost nothing else."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared_object import SharedObject, attach

from .helpers import cli

pytest.importorskip("mcap", reason="recordings need the mcap extra: pip install -e '.[mcap]'")
pytest.importorskip("rosbags", reason="ROS 2 needs the ros2 extra: pip install -e '.[ros2]'")

from rosbags.highlevel import AnyReader  # noqa: E402 - after the extras' check
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

from shared_object.recording import Recorder  # noqa: E402
from shared_object.ros2 import bag, messages  # noqa: E402

CHANGES = 12
STORE = get_typestore(Stores.ROS2_JAZZY)


def wait_until(done: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def record_some(prefix: str, output: Path) -> dict[str, Any]:
    """Record, as a rosbag2 file, a dict value with a frame, a pose vector, a trigger, a string
    and a value that maps to no message, each changed CHANGES times; the recorder's progress."""
    with (
        SharedObject(
            prefix + "-cam", data={"seq": 0, "frame": np.zeros((6, 8, 3), np.uint8)}
        ) as cam,
        SharedObject(prefix + "-pose", data=np.zeros(7)) as pose,
        SharedObject(prefix + "-estop") as estop,
        SharedObject(prefix + "-mode", data="idle") as mode,
        SharedObject(prefix + "-odd", data=[1, "two"]) as odd,
        open(output, "wb") as f,
    ):
        recorder = Recorder(f, [prefix + "-*"], ros2=True, frame_id="base")
        with recorder:
            wait_until(
                lambda: recorder.progress()["objects"] == 5, "the recorder to follow all five"
            )
            wait_until(
                lambda: (p := recorder.progress())["messages"] >= 5 and p["skipped"] >= 1,
                "the first values to be written",
            )
            for i in range(1, CHANGES + 1):
                cam.assign({"seq": i, "frame": np.full((6, 8, 3), i, np.uint8)})
                pose.assign(np.arange(7.0) * i)
                estop.trigger()
                mode.assign(f"mode{i}")
                odd.assign([i, "two"])
                want = 1 + i  # each object's first value, then i changes
                wait_until(  # the odd one's change too: skipped, not dropped as coalesced
                    lambda want=want: (
                        (p := recorder.progress())["messages"] >= 5 * want and p["skipped"] >= want
                    ),
                    "the changes to be written",
                )
        errors = recorder.errors
        progress = recorder.progress()
    return {"errors": errors, **progress}


def test_record_ros2_writes_a_bag_another_reader_reads_message_for_message(
    shm_name: str, tmp_path: Path
) -> None:
    output = tmp_path / "run.mcap"
    progress = record_some(shm_name, output)
    stem = messages.topic_for(shm_name)
    # The value that maps to nothing is refused once, saying what it holds; nothing else is lost.
    assert progress["skipped"] == 1 + CHANGES and progress["write_errors"] == 0
    assert any("-odd" in e and "maps to no ROS 2 message" in e for e in progress["errors"]), (
        progress["errors"]
    )
    with AnyReader([output]) as reader:
        topics = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        assert topics == {
            f"{stem}_cam/seq": ("std_msgs/msg/Int64", 1 + CHANGES),
            f"{stem}_cam/frame": ("sensor_msgs/msg/Image", 1 + CHANGES),
            f"{stem}_pose": ("std_msgs/msg/Float64MultiArray", 1 + CHANGES),
            f"{stem}_estop": ("std_msgs/msg/Empty", 1 + CHANGES),
            f"{stem}_mode": ("std_msgs/msg/String", 1 + CHANGES),
        }
        got: dict[str, list[Any]] = {}
        for connection, _, data in reader.messages():
            got.setdefault(connection.topic, []).append(
                reader.deserialize(data, connection.msgtype)
            )
    assert [m.data for m in got[f"{stem}_cam/seq"]] == list(range(CHANGES + 1))
    for i, image in enumerate(got[f"{stem}_cam/frame"]):
        assert (image.height, image.width, image.encoding, image.step) == (6, 8, "rgb8", 24)
        assert image.header.frame_id == "base"
        assert bytes(image.data) == np.full((6, 8, 3), i, np.uint8).tobytes()
    for i, array in enumerate(got[f"{stem}_pose"]):
        np.testing.assert_array_equal(array.data, np.arange(7.0) * i)
    assert [m.data for m in got[f"{stem}_mode"]] == [
        "idle",
        *(f"mode{i}" for i in range(1, CHANGES + 1)),
    ]


def test_record_ros2_writes_what_rosbag2s_mcap_storage_writes(
    shm_name: str, tmp_path: Path
) -> None:
    from mcap.reader import make_reader

    output = tmp_path / "run.mcap"
    record_some(shm_name, output)
    with open(output, "rb") as f:
        reader = make_reader(f)
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None and summary.chunk_indexes
        for channel in summary.channels.values():
            schema = summary.schemas[channel.schema_id]
            assert (schema.encoding, channel.message_encoding) == ("ros2msg", "cdr")
            assert schema.data.decode() == messages.msgdef(schema.name)  # with its dependencies
            assert channel.metadata["topic_type_hash"] == STORE.hash_rihs01(schema.name)
            (qos,) = json.loads(channel.metadata["offered_qos_profiles"])
            assert (qos["history"], qos["depth"], qos["reliability"]) == (
                "keep_last",
                10,
                "reliable",
            )
        assert summary.statistics.message_count == 5 * (1 + CHANGES)
        (record,) = [m for m in reader.iter_metadata() if m.name == "rosbag2"]
    metadata = json.loads(record.metadata["serialized_metadata"])  # YAML: rosbag2 loads it so
    assert metadata["version"] == 9 and metadata["storage_identifier"] == "mcap"
    assert metadata["relative_file_paths"] == ["run.mcap"]
    assert metadata["message_count"] == 5 * (1 + CHANGES)
    counts = {
        t["topic_metadata"]["name"]: t["message_count"]
        for t in metadata["topics_with_message_count"]
    }
    assert sum(counts.values()) == metadata["message_count"] and len(counts) == 5


def test_a_recording_plays_back_under_its_names_and_the_renames_given(
    shm_name: str, tmp_path: Path
) -> None:
    output = tmp_path / "run.mcap"
    record_some(shm_name, output)
    for suffix in ("-cam", "-pose", "-estop", "-mode", "-odd"):
        attach(shm_name + suffix).unlink()
    stem = messages.topic_for(shm_name)
    played = cli("play", str(output), "--rate", "50", "--rename", f"{stem}_cam/frame={shm_name}-frame",
                 "--rename", f"{stem}_cam/seq={shm_name}-seq")  # fmt: skip
    assert played.returncode == 0, played.stderr
    assert f"played {5 * (1 + CHANGES)} messages" in played.stdout
    np.testing.assert_array_equal(
        attach(shm_name + "-frame").fetch(), np.full((6, 8, 3), CHANGES, np.uint8)
    )
    assert attach(shm_name + "-seq").fetch() == CHANGES
    np.testing.assert_array_equal(
        attach(shm_name + "-pose").fetch(), np.arange(7.0) * CHANGES
    )  # its name
    assert attach(shm_name + "-mode").fetch() == f"mode{CHANGES}"  # outgrew "idle": made dynamic
    assert attach(shm_name + "-estop").fetch() is None


def write_bag(path: Path, messages_: list[tuple[str, str, Any]]) -> Path:
    """A rosbag2 bag written by rosbags' Writer (not ours): its .mcap file."""
    connections: dict[str, Any] = {}
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for t, (topic, ros_type, message) in enumerate(messages_):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, ros_type, typestore=STORE)
            writer.write(
                connections[topic], 1_000_000 * (t + 1), STORE.serialize_cdr(message, ros_type)
            )
    return path / f"{path.name}.mcap"


def test_play_plays_a_bag_another_writer_wrote(shm_name: str, tmp_path: Path) -> None:
    types = STORE.types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="cam"
    )

    def image(i: int) -> Any:
        pixels = np.full((4, 5), i, np.uint16)
        return types["sensor_msgs/msg/Image"](
            header=header,
            height=4,
            width=5,
            encoding="16UC1",
            is_bigendian=0,
            step=10,
            data=pixels.view(np.uint8).reshape(-1),
        )

    vector = types["geometry_msgs/msg/Vector3"]
    twist = types["geometry_msgs/msg/Twist"](
        linear=vector(x=1.0, y=0.0, z=0.0), angular=vector(x=0.0, y=0.0, z=0.5)
    )
    path = write_bag(tmp_path / "theirs", [
        ("/camera/depth", "sensor_msgs/msg/Image", image(1)),
        ("/cmd_vel", "geometry_msgs/msg/Twist", twist),
        ("/camera/depth", "sensor_msgs/msg/Image", image(2)),
    ])  # fmt: skip
    played = cli(
        "play",
        str(path),
        "--rename",
        f"/camera/depth={shm_name}-depth",
        "--rename",
        f"cmd_vel={shm_name}-cmd",
    )
    assert played.returncode == 0, played.stderr
    assert "played 3 messages of 2 objects" in played.stdout
    depth = attach(shm_name + "-depth").fetch()
    assert depth.dtype == np.uint16 and depth.shape == (4, 5) and (depth == 2).all()
    cmd = attach(shm_name + "-cmd").fetch()
    np.testing.assert_array_equal(cmd["linear"], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(cmd["angular"], [0.0, 0.0, 0.5])


def test_a_bags_bad_parts_are_refused_with_their_reason_and_the_rest_plays(
    shm_name: str, tmp_path: Path
) -> None:
    import mcap.writer

    path = tmp_path / "bad.mcap"
    string = "std_msgs/msg/String"
    with open(path, "wb") as f:
        writer = mcap.writer.Writer(f)
        writer.start(profile="ros2", library="test")
        good_schema = writer.register_schema(
            name=string, encoding="ros2msg", data=messages.msgdef(string).encode()
        )
        bad_schema = writer.register_schema(
            name="pkg/msg/Bad", encoding="ros2msg", data=b"int32 x\nnot a definition ~~\n"
        )

        def channel(topic: str, schema: int, type_hash: str) -> int:
            meta = {"offered_qos_profiles": "", "topic_type_hash": type_hash}
            return int(
                writer.register_channel(
                    topic=topic, message_encoding="cdr", schema_id=schema, metadata=meta
                )
            )

        good = channel("/good", good_schema, STORE.hash_rihs01(string))
        other = channel("/other_hash", good_schema, "RIHS01_" + "0" * 64)
        unparsed = channel("/unparsed", bad_schema, "")
        for t, (cid, data) in enumerate([
            (good, bytes(STORE.serialize_cdr(STORE.types[string](data="one"), string))),
            (good, b"\x00\x01\x00\x00\xff\xff\xff\x7f"),  # a string of 2 GB, cut short
            (other, bytes(STORE.serialize_cdr(STORE.types[string](data="x"), string))),
            (unparsed, b"\x00\x01\x00\x00\x01\x00\x00\x00"),
            (good, bytes(STORE.serialize_cdr(STORE.types[string](data="three"), string))),
        ]):  # fmt: skip
            writer.add_message(channel_id=cid, log_time=t + 1, publish_time=t + 1, data=data)
        writer.finish()
    played = cli("play", str(path), "--rename", f"/good={shm_name}-good")
    assert played.returncode == 0, played.stderr
    assert "'/other_hash'" in played.stderr and "topic_type_hash" in played.stderr
    assert "'/unparsed'" in played.stderr and "does not parse" in played.stderr
    assert "does not decode" in played.stderr
    assert "played 2 messages of 1 objects; skipped 1" in played.stdout
    assert attach(shm_name + "-good").fetch() == "three"


def test_a_channel_plays_into_the_object_it_was_recorded_from_else_one_named_after_its_topic() -> (
    None
):
    class Channel:
        def __init__(self, topic: str, metadata: dict[str, str]) -> None:
            self.topic, self.metadata = topic, metadata

    assert bag.object_name(Channel("/pose", {bag.NAME_KEY: "robot-pose"})) == "robot-pose"
    assert bag.object_name(Channel("/camera/image_raw", {})) == "camera-image_raw"


def test_the_command_line_records_a_bag(shm_name: str, tmp_path: Path) -> None:
    output = tmp_path / "cli.mcap"
    with SharedObject(shm_name + "-gain", data=0.5):
        result = cli("record", "--ros2", shm_name + "-gain", "-o", str(output), "--duration", "1.5")
    assert result.returncode == 0, result.stderr
    assert "recorded 1 messages" in result.stdout, result.stdout
    with AnyReader([output]) as reader:
        ((connection, _, data),) = list(reader.messages())
        assert connection.msgtype == "std_msgs/msg/Float64"
        assert reader.deserialize(data, connection.msgtype).data == 0.5
