"""ROS 2 without ROS 2: rmw_zenoh's formats against its own documentation and sources, the mapping
of our kinds to messages and back, and a bridge talking to an rmw_zenoh peer written by others.

Golden values, and where each comes from:
- key expressions and liveliness tokens: rmw_zenoh's docs/design.md ("Topic and Service name
  mapping to Zenoh key expressions", "Graph Cache"), verbatim;
- RIHS01 hashes: std_msgs/msg/String's from the same page; sensor_msgs/msg/Image's as ROS 2's
  ``ros2 topic info -v`` prints it;
- the compact attachment: attachment_helpers.cpp (rmw_zenoh 0.2.4+ in Jazzy, 0.6+ in Kilted and
  Rolling: two i64 then the 16-byte GID as a sequence); the keyed one: Jazzy's 0.2.0-0.2.3;
- GIDs: XXH3-128 of the token (liveliness_utils.cpp), low 64 bits first; XXH3-128 of nothing is
  0x99aa06d3014798d86001c324468d497f (xxHash's own test vector).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared_object import InvalidArgumentError
from shared_object.payload import Decoder, encode
from shared_object.testing import free_port

pytest.importorskip("rosbags", reason="ROS 2 needs the ros2 extra: pip install -e '.[ros2]'")
pytest.importorskip("xxhash", reason="ROS 2 needs the ros2 extra: pip install -e '.[ros2]'")
from shared_object.ros2 import messages, rmw_zenoh  # noqa: E402

STRING_HASH = "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"
IMAGE_HASH = "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47"
STRING_DDS = "std_msgs::msg::dds_::String_"


# ---------------------------------------------------------------------------------------------
# rmw_zenoh's formats
# ---------------------------------------------------------------------------------------------
def test_type_hashes_are_ros_2s() -> None:
    assert messages.type_hash("std_msgs/msg/String") == STRING_HASH
    assert messages.type_hash("sensor_msgs/msg/Image") == IMAGE_HASH
    assert rmw_zenoh.dds_type_name("std_msgs/msg/String") == STRING_DDS
    assert rmw_zenoh.ros_type_name(STRING_DDS) == "std_msgs/msg/String"


def test_key_expressions_are_design_mds() -> None:
    assert (
        rmw_zenoh.topic_key(0, "/chatter", "std_msgs/msg/String", STRING_HASH)
        == f"0/chatter/{STRING_DDS}/{STRING_HASH}"
    )
    assert (
        rmw_zenoh.topic_key(0, "/robot1/chatter", "std_msgs/msg/String", STRING_HASH)
        == f"0/robot1/chatter/{STRING_DDS}/{STRING_HASH}"
    )


def test_liveliness_tokens_are_design_mds() -> None:
    listener = rmw_zenoh.Node(2, "aac3178e146ba6f1fc6e6a4085e77f21", 0, "listener")
    talker = rmw_zenoh.Node(2, "8b20917502ee955ac4476e0266340d5c", 0, "talker")
    assert listener.token() == "@ros2_lv/2/aac3178e146ba6f1fc6e6a4085e77f21/0/0/NN/%/%/listener"
    subscription = rmw_zenoh.endpoint_token(
        listener, 10, rmw_zenoh.SUBSCRIPTION, "/chatter", "std_msgs/msg/String", STRING_HASH,
        rmw_zenoh.QoS(depth=10),
    )  # fmt: skip
    assert subscription == (
        "@ros2_lv/2/aac3178e146ba6f1fc6e6a4085e77f21/0/10/MS/%/%/listener/%chatter/"
        f"{STRING_DDS}/{STRING_HASH}/::,10:,:,:,,"
    )
    publisher = rmw_zenoh.endpoint_token(
        talker, 10, rmw_zenoh.PUBLISHER, "/chatter", "std_msgs/msg/String", STRING_HASH,
        rmw_zenoh.QoS(depth=7),
    )  # fmt: skip
    assert publisher == (
        "@ros2_lv/2/8b20917502ee955ac4476e0266340d5c/0/10/MP/%/%/talker/%chatter/"
        f"{STRING_DDS}/{STRING_HASH}/::,7:,:,:,,"
    )
    best_effort = rmw_zenoh.QoS(
        reliability=rmw_zenoh.BEST_EFFORT, durability=rmw_zenoh.TRANSIENT_LOCAL
    )
    assert best_effort.keyexpr() == "2:1:,10:,:,:,,"


def test_a_gid_is_the_xxh3_of_its_token() -> None:
    assert rmw_zenoh.gid("") == (0x99AA06D3014798D86001C324468D497F).to_bytes(16, "little")
    token = "@ros2_lv/2/aac3178e146ba6f1fc6e6a4085e77f21/0/0/NN/%/%/listener"
    assert rmw_zenoh.gid(token) != rmw_zenoh.gid(token + "x") and len(rmw_zenoh.gid(token)) == 16


def test_attachments_in_both_formats() -> None:
    gid = bytes(range(16))
    compact = rmw_zenoh.encode_attachment(7, 1_700_000_000_000_000_001, gid)
    assert compact == (
        (7).to_bytes(8, "little")
        + (1_700_000_000_000_000_001).to_bytes(8, "little")
        + b"\x10"
        + gid
    )
    keyed = rmw_zenoh.encode_attachment(7, 5, gid, "keyed")
    assert keyed == (
        b"\x0fsequence_number" + (7).to_bytes(8, "little")
        + b"\x10source_timestamp" + (5).to_bytes(8, "little")
        + b"\x0asource_gid" + b"\x10" + gid
    )  # fmt: skip
    for data, timestamp in ((compact, 1_700_000_000_000_000_001), (keyed, 5)):
        decoded = rmw_zenoh.decode_attachment(data)
        assert (decoded.sequence, decoded.timestamp_ns, decoded.source_gid) == (7, timestamp, gid)
    for bad in (b"", compact[:20], compact + b"x", keyed.replace(b"source_gid", b"source_xid")):
        with pytest.raises(ValueError, match="attachment"):
            rmw_zenoh.decode_attachment(bad)


# ---------------------------------------------------------------------------------------------
# The mapping, both ways
# ---------------------------------------------------------------------------------------------
def exported_round_trip(
    value: Any, path: tuple[str, ...] = (), asked: str | None = None
) -> tuple[str, Any]:
    schema_text, _ = encode(value)
    made = messages.exported(Decoder().layout(schema_text), path, asked, "frame-7")
    back = messages.decode(made.cdr(value, 1_700_000_000_123_456_789), made.ros_type)
    return made.ros_type, back


@pytest.mark.parametrize(
    ("image", "encoding"),
    [
        (np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3), "rgb8"),
        (np.arange(4 * 6 * 4, dtype=np.uint8).reshape(4, 6, 4), "rgba8"),
        (np.arange(24, dtype=np.uint8).reshape(4, 6), "mono8"),
        (np.arange(24, dtype=np.uint16).reshape(4, 6) * 1000, "16UC1"),
        (np.linspace(0, 5, 24, dtype=np.float32).reshape(4, 6), "32FC1"),
    ],
)
def test_images_cross_as_image_messages_and_come_back_equal(image: Any, encoding: str) -> None:
    schema_text, _ = encode(image)
    made = messages.exported(Decoder().layout(schema_text), (), None, "cam")
    assert made.ros_type == "sensor_msgs/msg/Image" and made.describe.endswith(encoding)
    message = messages.typestore().deserialize_cdr(bytes(made.cdr(image, 42)), made.ros_type)
    assert (message.encoding, message.header.frame_id, message.header.stamp.nanosec) == (
        encoding,
        "cam",
        42,
    )
    back = messages.decode(made.cdr(image, 42), made.ros_type)
    assert back.dtype == image.dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)


def test_bgr8_on_request_swaps_the_channels_it_says() -> None:
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    _, back = exported_round_trip(image, asked="bgr8")  # received as stored: b, g, r
    np.testing.assert_array_equal(back[..., ::-1], image)


def test_a_leaf_of_a_dict_value_and_the_scalars() -> None:
    value = {
        "seq": 3,
        "stamp_ns": 99,
        "ok": True,
        "gain": 0.5,
        "mode": "auto",
        "frame": np.zeros((2, 3, 3), np.uint8),
        "joints": np.arange(7.0),
    }
    assert exported_round_trip(value, ("seq",)) == ("std_msgs/msg/Int64", 3)
    assert exported_round_trip(value, ("ok",)) == ("std_msgs/msg/Bool", True)
    assert exported_round_trip(value, ("gain",)) == ("std_msgs/msg/Float64", 0.5)
    assert exported_round_trip(value, ("mode",)) == ("std_msgs/msg/String", "auto")
    ros_type, back = exported_round_trip(value, ("joints",))
    assert ros_type == "std_msgs/msg/Float64MultiArray"
    np.testing.assert_array_equal(back, value["joints"])  # a MultiArray comes back as its data
    ros_type, back = exported_round_trip(np.arange(3, dtype=np.float32))
    assert ros_type == "std_msgs/msg/Float32MultiArray" and back.dtype == np.float32
    assert exported_round_trip(None) == ("std_msgs/msg/Empty", None)  # a trigger object


def test_an_image_sent_with_encode_jpeg_is_a_compressed_image_image_transport_reads() -> None:
    simplejpeg = pytest.importorskip("simplejpeg")
    from shared_object.bridge import encoding

    codec = encoding.parse_rule("cam=jpeg:95").codec()
    assert codec is not None
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (200, 30, 30)
    value = {"seq": 1, "frame": image}
    schema_text, _ = encode(value)
    made = messages.exported(
        Decoder().layout(schema_text),
        ("frame",),
        None,
        "cam",
        lambda a: (codec.name, codec.encode(a)),
    )
    assert made.ros_type == "sensor_msgs/msg/CompressedImage"
    message = messages.typestore().deserialize_cdr(bytes(made.cdr(value, 7)), made.ros_type)
    # compressed_image_transport's format: what was sent; what decoding (OpenCV's) gives back
    assert message.format == "rgb8; jpeg compressed bgr8" and message.header.frame_id == "cam"
    decoded = simplejpeg.decode_jpeg(bytes(message.data), colorspace="RGB")
    assert np.abs(decoded.astype(int) - image).mean() < 3  # lossy: ringing at the edge only
    asked_raw = messages.exported(
        Decoder().layout(schema_text), ("frame",), "sensor_msgs/msg/Image", "cam", None
    )
    assert asked_raw.ros_type == "sensor_msgs/msg/Image"


def test_a_pose_crosses_as_a_pose_stamped() -> None:
    sapien = pytest.importorskip("sapien", reason="poses need the sapien extra")
    pose = sapien.Pose([1.0, 2.0, 3.0], [0.5, 0.5, 0.5, 0.5])
    ros_type, back = exported_round_trip({"pose": pose}, ("pose",))
    assert ros_type == "geometry_msgs/msg/PoseStamped"
    np.testing.assert_allclose(back["pose"]["position"], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(back["pose"]["orientation"], [0.5, 0.5, 0.5, 0.5])  # x y z w
    assert back["header"]["frame_id"] == "frame-7"


def test_a_twist_arrives_as_two_arrays() -> None:
    store = messages.typestore()
    vector, twist = store.types["geometry_msgs/msg/Vector3"], store.types["geometry_msgs/msg/Twist"]
    data = store.serialize_cdr(
        twist(linear=vector(x=1.0, y=2.0, z=3.0), angular=vector(x=0.0, y=0.0, z=0.5)),
        "geometry_msgs/msg/Twist",
    )
    value = messages.decode(data, "geometry_msgs/msg/Twist")
    assert set(value) == {"linear", "angular"}
    np.testing.assert_array_equal(value["linear"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(value["angular"], [0.0, 0.0, 0.5])


def test_what_maps_to_nothing_is_refused_saying_what_it_holds() -> None:
    for value, path, asked, says in (
        ({"a": 1}, (), None, "the value holds dict"),
        (np.zeros((2, 3, 2), np.uint8), (), None, "ndarray[uint8, (2, 3, 2)]"),
        (np.zeros((4, 6), np.uint8), (), "bgr8", "of type bgr8"),
        ({"a": 1}, ("b",), None, "no key 'b'"),
    ):
        schema_text, _ = encode(value)
        with pytest.raises(InvalidArgumentError, match=re.escape(says)):
            messages.exported(Decoder().layout(schema_text), path, asked, "x")


def test_a_hostile_message_is_a_decode_error_never_another() -> None:
    schema_text, _ = encode(np.zeros((4, 6, 3), np.uint8))
    made = messages.exported(Decoder().layout(schema_text), (), None, "x")
    good = bytes(made.cdr(np.zeros((4, 6, 3), np.uint8), 1))
    rng = np.random.default_rng(3)
    for _ in range(300):
        bad = bytearray(good[: rng.integers(0, len(good) + 1)])
        for at in rng.integers(0, max(len(bad), 1), 3):
            if at < len(bad):
                bad[at] = int(rng.integers(0, 256))
        try:
            value = messages.decode(bytes(bad), made.ros_type)
        except messages.MessageDecodeError:
            continue
        assert isinstance(value, np.ndarray)  # whatever decoded is an image, whole


def test_names_and_options() -> None:
    from shared_object.bridge import ros2

    assert messages.topic_for("demo-frame.frame") == "/demo_frame/frame"
    assert messages.object_for("/camera/image_raw") == "camera-image_raw"
    rule = ros2.parse_export("demo-frame.frame=/camera/image_raw:bgr8")
    assert (rule.source, rule.topic, rule.asked) == (
        "demo-frame.frame",
        "/camera/image_raw",
        "bgr8",
    )
    assert ros2.parse_export("estop").topic == "/estop"
    rule_in = ros2.parse_import("/cmd_vel:geometry_msgs/msg/Twist=cmd")
    assert (rule_in.topic, rule_in.ros_type, rule_in.name) == (
        "/cmd_vel",
        "geometry_msgs/msg/Twist",
        "cmd",
    )
    for bad, says in (
        (lambda: ros2.parse_export("cam=camera"), "not a ROS 2 topic name"),
        (lambda: ros2.parse_export("cam=/camera:rgb9"), "TYPE is a message type"),
        (lambda: ros2.parse_export("cam=/camera:no_msgs/msg/Nothing"), "not a message type known"),
        (lambda: ros2.parse_import("/cmd_vel"), "write /TOPIC"),
        (lambda: ros2.parse_import("/2fast=x"), "not a ROS 2 topic name"),
        (lambda: ros2.domain_id(300), "0 to 232"),
    ):
        with pytest.raises(InvalidArgumentError, match=re.escape(says)):
            bad()


# ---------------------------------------------------------------------------------------------
# A bridge and an rmw_zenoh peer through a router
# ---------------------------------------------------------------------------------------------
PEER = str(Path(__file__).with_name("ros2peer.py"))
DEADLINE = 60.0


class Peer:
    def __init__(self, port: int, msg_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, PEER, "peer", str(port), str(msg_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._read()

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            pytest.fail("the ROS 2 peer (zenoh-ros2-sdk) ended")
        return json.loads(line)

    def ask(self, **command: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()["answer"]

    def until(self, done: Callable[[Any], bool], **command: Any) -> Any:
        deadline = time.monotonic() + DEADLINE
        while True:
            answer = self.ask(**command)
            if done(answer) or time.monotonic() > deadline:
                return answer
            time.sleep(0.2)


@pytest.fixture
def ros2_world(
    tmp_path: Path,
) -> Iterator[tuple[int, dict[str, str], Peer, Callable[..., subprocess.Popen[str]]]]:
    pytest.importorskip(
        "zenoh_ros2_sdk", reason="the ROS 2 side's peer: pip install -e '.[integration]'"
    )
    from ros2peer import write_msg_files

    port = free_port()
    shm = tmp_path / "shm"
    shm.mkdir()
    env = {**os.environ, "SHARED_OBJECT_DIR": str(shm)}
    write_msg_files(
        tmp_path / "msgs",
        ["sensor_msgs/msg/Image", "geometry_msgs/msg/Twist", "std_msgs/msg/Empty"],
    )
    started: list[subprocess.Popen[str]] = []
    router = subprocess.Popen(
        [sys.executable, PEER, "router", str(port)], stdout=subprocess.PIPE, text=True
    )
    started.append(router)
    assert router.stdout is not None and router.stdout.readline().strip() == "READY"

    def bridge(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "shared_object", "bridge", "--json", "--router", f"tcp/127.0.0.1:{port}", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        started.append(process)
        return process

    peer = Peer(port, tmp_path / "msgs")
    started.append(peer.process)
    try:
        yield port, env, peer, bridge
    finally:
        for process in started:
            process.kill()
            process.wait(10)


def run(env: dict[str, str], code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_ros_2_node_sees_our_frame_our_topics_and_our_trigger_and_we_get_its_twist(
    ros2_world: Any,
) -> None:
    _, env, peer, bridge = ros2_world
    frame = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    run(env, (
        "import numpy as np; from shared_object import SharedObject\n"
        f"SharedObject('cam', data={{'seq': 1, 'frame': np.arange({frame.size}, dtype=np.uint8).reshape(48, 64, 3)}}).close()\n"
        "SharedObject('estop').close()"
    ))  # fmt: skip
    peer.ask(do="subscribe", topic="/camera/image_raw", type="sensor_msgs/msg/Image")
    peer.ask(do="subscribe", topic="/estop", type="std_msgs/msg/Empty")
    bridge(
        "--ros2-export", "cam.frame=/camera/image_raw", "--ros2-export", "estop",
        "--ros2-import", "/cmd_vel:geometry_msgs/msg/Twist=cmd", "--ros2-frame-id", "camera",
    )  # fmt: skip
    # Discovery, as `ros2 topic list -t` and `ros2 topic info -v` see it
    topics = dict(
        peer.until(
            lambda t: {"/camera/image_raw", "/estop", "/cmd_vel"} <= {n for n, _ in t}, do="topics"
        )
    )
    assert topics["/camera/image_raw"] == ["sensor_msgs/msg/Image"]
    assert topics["/estop"] == ["std_msgs/msg/Empty"]
    assert topics["/cmd_vel"] == ["geometry_msgs/msg/Twist"]
    assert peer.until(lambda n: n, do="info", topic="/camera/image_raw") == ["shared_object_bridge"]
    # The frame, as an Image whose pixels are the frame's
    run(env, (
        "import numpy as np; from shared_object import SharedObject\n"
        f"o = SharedObject.attach('cam'); o.assign({{'seq': 2, 'frame': np.arange({frame.size}, dtype=np.uint8).reshape(48, 64, 3)}})"
    ))  # fmt: skip
    images = peer.until(lambda m: m, do="received", topic="/camera/image_raw")
    assert images, "no Image reached the ROS 2 node"
    image = images[-1]
    assert (image["height"], image["width"], image["encoding"], image["frame_id"]) == (
        48,
        64,
        "rgb8",
        "camera",
    )
    assert bytes.fromhex(image["data"]) == frame.tobytes()
    # A trigger, as Empty
    before = len(peer.ask(do="received", topic="/estop"))
    run(env, "from shared_object import SharedObject; SharedObject.attach('estop').trigger()")
    triggered = peer.until(lambda m: len(m) > before, do="received", topic="/estop")
    assert len(triggered) > before and triggered[-1]["type"] == "std_msgs/msg/Empty"
    # A Twist the node publishes lands in our object
    for x in (1.0, 2.0, 3.0):
        peer.ask(
            do="publish_twist", topic="/cmd_vel", linear=[x, 0.0, 0.0], angular=[0.0, 0.0, 0.5]
        )
        time.sleep(0.3)
    out = run(env, (
        "import time; from shared_object import attach\n"
        "cmd = attach('cmd', timeout=30)\n"
        "deadline = time.monotonic() + 30\n"
        "while cmd.fetch()['linear'][0] != 3.0 and time.monotonic() < deadline: cmd.wait(0.5)\n"
        "v = cmd.fetch(); print(v['linear'].tolist(), v['angular'].tolist())"
    ))  # fmt: skip
    assert out.strip() == "[3.0, 0.0, 0.0] [0.0, 0.0, 0.5]"


def test_a_message_of_another_definition_is_counted_and_changes_nothing(ros2_world: Any) -> None:
    port, env, peer, bridge = ros2_world
    importer = bridge("--ros2-import", "/cmd_vel:geometry_msgs/msg/Twist=cmd")
    import zenoh

    config = zenoh.Config()
    config.insert_json5("mode", '"client"')
    config.insert_json5("connect/endpoints", json.dumps([f"tcp/127.0.0.1:{port}"]))
    session = zenoh.open(config)
    try:
        twist_dds = rmw_zenoh.dds_type_name("geometry_msgs/msg/Twist")
        other = session.declare_publisher(f"0/cmd_vel/{twist_dds}/RIHS01_{'0' * 64}")
        garbage = session.declare_publisher(
            f"0/cmd_vel/{twist_dds}/{messages.type_hash('geometry_msgs/msg/Twist')}"
        )
        time.sleep(2)
        for _ in range(3):
            other.put(b"\x00\x01\x00\x00" + bytes(48))  # a well-formed Twist, of another definition
            garbage.put(b"\x00\x01\x00\x00\x01")  # ours, cut short
            time.sleep(0.2)
        assert importer.stdout is not None
        deadline = time.monotonic() + DEADLINE
        totals: dict[str, int] = {}
        while time.monotonic() < deadline:
            line = importer.stdout.readline()
            if line.startswith("{"):
                totals = json.loads(line)["totals"]
                if totals["errors"] >= 3 and totals["malformed"] >= 3:
                    break
        assert totals["errors"] >= 3 and totals["malformed"] >= 3 and totals["received"] == 0, (
            totals
        )
        out = run(
            env,
            "from shared_object import attach\ntry:\n    attach('cmd'); print('there')\nexcept FileNotFoundError:\n    print('never created')",
        )
        assert out.strip() == "never created"
    finally:
        session.close()
