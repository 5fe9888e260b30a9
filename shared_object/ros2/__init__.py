"""ROS 2 without ROS 2 (extra ``ros2``): our objects as ROS 2 messages and back (``messages``),
what ROS 2's Zenoh middleware puts on the wire (``rmw_zenoh``), and rosbag2's bags (``bag``).

The bridge speaks rmw_zenoh with them (``shared-object bridge --ros2-export/--ros2-import``),
``record --ros2`` writes bags that ROS 2 tools read, and ``play`` plays rosbag2 MCAP files.
Messages, their definitions and type hashes, and CDR come from rosbags (pure Python).
"""
