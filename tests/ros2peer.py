"""ROS 2's side in the ROS 2 tests: a Zenoh router standing in for rmw_zenohd, and an rmw_zenoh
peer written by others (zenoh-ros2-sdk, pinned in the integration extra), run as programs.

    python tests/ros2peer.py router PORT
    python tests/ros2peer.py peer PORT MSG_DIR     (then reads one JSON command a line)

The SDK fetches message definitions from GitHub unless given a directory of ``.msg`` files:
``write_msg_files`` writes them from rosbags' type store, dependencies included.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

SEPARATOR = "=" * 80


def write_msg_files(directory: str | Path, ros_types: list[str]) -> None:
    """``directory/pkg/msg/Name.msg`` for each of ``ros_types`` and what they use."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    for ros_type in ros_types:
        text, _ = store.generate_msgdef(ros_type, ros_version=2)
        first, *rest = text.split(SEPARATOR + "\n")
        sections = [(ros_type, first)]
        for section in rest:
            head, _, body = section.partition("\n")
            package, name = head.removeprefix("MSG: ").strip().split("/")
            sections.append((f"{package}/msg/{name}", body))
        for full, body in sections:
            package, _, name = full.split("/")
            folder = Path(directory, package, "msg")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.msg").write_text(body.strip() + "\n")


def router(port: int) -> None:
    import zenoh

    config = zenoh.Config()
    config.insert_json5("mode", '"router"')
    config.insert_json5("listen/endpoints", json.dumps([f"tcp/127.0.0.1:{port}"]))
    config.insert_json5("scouting/multicast/enabled", "false")
    session = zenoh.open(config)  # closed when collected: held until the end
    print("READY", flush=True)
    time.sleep(3600)
    session.close()


def peer(port: int, msg_dir: str) -> None:
    """Commands, one JSON object a line; an answer, one JSON line each."""
    from zenoh_ros2_sdk.message_registry import get_registry

    get_registry(msg_dir)  # before anything else asks for it: no network
    from zenoh_ros2_sdk import ROS2Publisher, ROS2Subscriber
    from zenoh_ros2_sdk.discovery import get_topic_info, get_topic_names_and_types

    received: dict[str, list[Any]] = {}
    lock = threading.Lock()
    subscribers, publishers = [], {}

    def keep(topic: str) -> Any:
        def callback(message: Any) -> None:
            with lock:
                received.setdefault(topic, []).append(message)

        return callback

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        verb = command["do"]
        answer: Any = None
        if verb == "subscribe":
            subscribers.append(
                ROS2Subscriber(
                    command["topic"], command["type"], keep(command["topic"]), router_port=port
                )
            )
        elif verb == "received":
            with lock:
                messages = list(received.get(command["topic"], []))
            answer = [summary(m) for m in messages]
        elif verb == "topics":
            answer = get_topic_names_and_types(router_port=port, timeout=1.0)
        elif verb == "info":
            info = get_topic_info(command["topic"], router_port=port, timeout=1.0, verbose=True)
            answer = None if info is None else [p.node_name for p in info.publishers]
        elif verb == "publish_twist":
            if command["topic"] not in publishers:
                publishers[command["topic"]] = ROS2Publisher(
                    command["topic"], "geometry_msgs/msg/Twist", router_port=port
                )
            publisher = publishers[command["topic"]]
            vector = publisher.session_mgr.store.types["geometry_msgs/msg/Vector3"]
            publisher.publish(
                linear=vector(**dict(zip("xyz", command["linear"], strict=True))),
                angular=vector(**dict(zip("xyz", command["angular"], strict=True))),
            )
        print(json.dumps({"answer": answer}), flush=True)
    os._exit(0)  # a Zenoh session with callbacks may hang at exit


def summary(message: Any) -> dict[str, Any]:
    """What a test compares of a received message."""
    kind = getattr(message, "__msgtype__", "")
    out: dict[str, Any] = {"type": kind}
    if kind == "sensor_msgs/msg/Image":
        out.update(
            height=message.height, width=message.width, encoding=message.encoding,
            frame_id=message.header.frame_id, data=bytes(message.data).hex(),
        )  # fmt: skip
    return out


if __name__ == "__main__":
    if sys.argv[1] == "router":
        router(int(sys.argv[2]))
    else:
        peer(int(sys.argv[2]), sys.argv[3])
