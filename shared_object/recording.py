"""Recording shared objects into MCAP files, and playing them back (extra: ``shared_object[mcap]``).

MCAP is the container format of rosbag2 and Foxglove: a file of channels, each with a schema,
and time-stamped messages, written in chunks with an index at the end.

The layout of a recording:

- one channel per object and kind, its topic the object's name (a SharedDynamicObject whose kind
  changed has one channel per kind, all on its topic); channel metadata ``dynamic``
  ("true"/"false"), ``slots`` ("1"/"2", or the ring's size) and, for an object with a history,
  ``history`` (its size) say how to re-create it;
- the channel's schema: encoding ``shared_object.schema``, name the kind it describes
  (``ndarray[uint8, (480, 848, 3)]``), data our schema JSON text (see ``_schema``);
- one message per recorded change, encoding ``shared_object.payload``: the raw payload as it lay
  in the slot (see ``_codecs``); log time the object's change time (its mtime, ns since the
  epoch), publish time when it was recorded, sequence the change counter (mod 2**32).

Nothing is pickled: ``play`` validates every schema and payload as ``attach`` validates a
segment (``shared_object.payload``), skips what fails with a message naming it, and goes on.

With ``ros2=True`` (``record --ros2``) the file is a rosbag2 one instead: each value as the
ROS 2 message it maps to, written as rosbag2's MCAP storage writes it (``shared_object.ros2.bag``
says what that is); ``play`` plays both kinds of file, and any rosbag2 MCAP file.

The recorder and the player use the package's public API alone (``SharedObject.fetch_raw``,
``shared_object.payload``, ``shared_object.follow``); the commands are ``shared_object.cli``'s.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, NamedTuple

from . import RawValue, SharedDynamicObject, SharedObject
from ._errors import (
    CapacityError,
    InvalidArgumentError,
    LayoutError,
    MissingExtraError,
    SharedObjectError,
    TypeMismatchError,
)
from ._extras import require
from .follow import Follower
from .payload import Decoder

SCHEMA_ENCODING = "shared_object.schema"
MESSAGE_ENCODING = "shared_object.payload"
PROFILE = "shared_object"
#: How often a recorder looks for new objects that match its patterns, and reports progress.
TICK_S = 1.0
#: The bytes of changes a recorder holds copied but not yet written (``record --buffer-mb``): a
#: write stall shorter than this takes to fill loses nothing (64 MB: 1.7 s of a 30 Hz camera's
#: 1.22 MB frames).
DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024


def _mcap() -> Any:
    return require("mcap", "mcap.writer", extra="mcap", feature="recording")


# ---------------------------------------------------------------------------------------------
# record
# ---------------------------------------------------------------------------------------------
class _Copied(NamedTuple):
    """A change copied out of shared memory, waiting for its turn to be written."""

    name: str
    raw: RawValue
    dynamic: str  # channel metadata: see the module's docstring
    slots: str
    history: str  # the object's history ("" without one)
    missed: int  # changes of this object that came and went before this one was copied


def _queued_size(copied: _Copied) -> int:
    """What a queued change holds: its payload, and its Python objects (a pose is mostly them)."""
    return len(copied.raw.payload) + 256


class Recorder:
    """Writes every change of the objects matching ``patterns`` to an MCAP file, until
    :meth:`finish` (or the end of a ``with`` block).

    A Follower (``shared_object.follow``) gives each object a thread that waits for its changes
    (``wait()``: no CPU while nothing changes) and copies each new value's payload
    (``fetch_raw``: never torn) into a queue; one writer thread writes the queue to the file. A
    file system that stalls (a disk flushing its cache can block a write for tens of
    milliseconds) then delays the file, not the copies: nothing is missed while the queue holds
    less than ``buffer_bytes``. When it holds more, the copying threads wait, and a change that
    came and went meanwhile is counted as dropped (the gap in the change counter). A producer
    that restarts (its object removed and created again) is followed into its new object. A
    change copied but not written yet is lost with the process (SIGKILL); Ctrl-C and SIGTERM
    write the queue out first. An object with a history (``history=N``) is read with
    ``fetch_new``: every value it holds since the last copy, so a stall shorter than its history
    loses nothing; what it overwrote meanwhile (``lost``) is counted as dropped.
    """

    def __init__(
        self,
        output: IO[bytes],
        patterns: list[str],
        *,
        max_rate: float | None = None,
        compression: str = "none",
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        ros2: bool = False,
        frame_id: str | None = None,
    ) -> None:
        mcap = _mcap()
        kinds = {
            "none": mcap.writer.CompressionType.NONE,
            "zstd": mcap.writer.CompressionType.ZSTD,
            "lz4": mcap.writer.CompressionType.LZ4,
        }
        if compression not in kinds:
            msg = f"compression must be one of {sorted(kinds)}, not {compression!r}"
            raise InvalidArgumentError(msg)
        if buffer_bytes <= 0:
            msg = f"the buffer must hold some bytes, not {buffer_bytes}"
            raise InvalidArgumentError(msg)
        from . import __version__

        # Uncompressed, messages go to the file as records of their own: chunking would copy each
        # payload into a chunk buffer first (and checksum it) for nothing but the index, and a
        # file cut short keeps every complete message. Compression works on chunks. A rosbag2
        # file is chunked as rosbag2 chunks it (without CRCs): ROS 2's readers (rosbags') read
        # messages of several objects in log-time order only through the chunk index.
        compressed = compression != "none"
        self.writer = mcap.writer.Writer(
            output,
            compression=kinds[compression],
            use_chunking=compressed or ros2,
            enable_crcs=compressed,
        )
        self.bag = None
        if ros2:
            from .ros2 import bag

            self.bag = bag.BagWriter(self.writer, str(getattr(output, "name", "")), frame_id)
        profile = PROFILE if self.bag is None else bag.PROFILE
        self.writer.start(profile=profile, library=f"shared_object {__version__}")
        self.patterns = patterns
        self.rate_limited = bool(max_rate)
        self.buffer_bytes = buffer_bytes
        self.stop = threading.Event()
        # Guards the queue, the spare buffers, the counters and the errors below.
        self.lock = threading.Lock()
        self.has_work = threading.Condition(self.lock)  # for the writer thread
        self.has_room = threading.Condition(self.lock)  # for the copying threads
        self.queue: collections.deque[_Copied] = collections.deque()
        self.queued_bytes = 0
        self.writer_idle = False
        self.writing = True  # false once finish() has asked the writer thread to end
        # Payload buffers written and free again, per object: the next copies go into memory
        # that is already mapped (see fetch_raw's ``into``).
        self.spare: dict[str, list[bytearray]] = {}
        self.spare_bytes = 0
        self.channels: dict[tuple[str, bytes], int] = {}  # (name, schema text) -> channel id
        self.schemas: dict[bytes, int] = {}
        self.decoder = Decoder()
        self.messages = 0
        self.bytes = 0
        self.dropped = 0
        self.write_errors = 0
        self.skipped = 0  # changes of values that map to no ROS 2 message (ros2=True)
        self._errors: list[str] = []
        self.follower = Follower(
            patterns,
            lambda obj: _Copier(self, obj),
            max_rate=max_rate,
            on_error=self._error,
            name="record",
        )
        self.writer_thread = threading.Thread(
            target=self._write_queue, name="record writer", daemon=True
        )
        self.writer_thread.start()

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def start(self) -> None:
        """Follow the matching objects, now and as they appear (every second)."""
        self.follower.start()

    def scan(self) -> None:
        """Follow each matching object not followed yet (``start`` does it every second)."""
        self.follower.scan()

    @property
    def errors(self) -> list[str]:
        """What went wrong so far (an object that cannot be read, a write that failed)."""
        with self.lock:
            return list(self._errors)

    def take_errors(self) -> list[str]:
        """What went wrong since the last call."""
        with self.lock:
            errors, self._errors = self._errors, []
        return errors

    def _error(self, name: str, error: Exception) -> None:
        with self.lock:
            self._errors.append(f"{name}: {error}")

    def _room_for_a_copy(self, name: str) -> bytearray | None:
        """A spare buffer of ``name``'s (empty if none), once the queue has room; None when
        stopping."""
        with self.lock:
            while self.queued_bytes >= self.buffer_bytes:
                if self.stop.is_set():
                    return None
                self.has_room.wait(0.2)
            spares = self.spare.get(name)
            if not spares:
                return bytearray()
            self.spare_bytes -= len(spares[-1])
            return spares.pop()

    def _enqueue(self, copied: _Copied) -> None:
        with self.lock:
            self.queue.append(copied)
            self.queued_bytes += _queued_size(copied)
            self.dropped += copied.missed
            if self.writer_idle:  # otherwise it takes this one with the rest: no wake-up
                self.has_work.notify()

    def _give_back(self, name: str, payload: bytes | bytearray) -> None:
        """Keep ``payload``'s memory for ``name``'s next copies (call with the lock held). The
        spare buffers hold at most what the queue may: as many as were in flight at once."""
        if self.spare_bytes + len(payload) > self.buffer_bytes:
            return
        # A payload that came back as bytes had no spare of its size: it becomes one.
        self.spare.setdefault(name, []).append(
            payload if isinstance(payload, bytearray) else bytearray(payload)
        )
        self.spare_bytes += len(payload)

    def _write_queue(self) -> None:
        """The writer thread: the queue, in order, into the file, until finish() and empty.

        It takes everything queued at once, and wakes the copying threads waiting for room
        only when a quarter of the buffer is free again: one wake-up per item (a pose at
        10,000 changes a second) would cost more than the writes.
        """
        resume_below = self.buffer_bytes - self.buffer_bytes // 4
        while True:
            with self.lock:
                while not self.queue and self.writing:
                    self.writer_idle = True
                    self.has_work.wait()
                self.writer_idle = False
                if not self.queue:
                    return
                batch, self.queue = self.queue, collections.deque()
            for copied in batch:
                written, failed, refused = 0, None, None
                try:
                    written = self._write(copied)
                except InvalidArgumentError as exc:  # maps to no ROS 2 message: said once
                    refused = f"{copied.name}: {exc}"
                except Exception as exc:  # noqa: BLE001 - a disk full or gone: keep the rest
                    failed = f"{copied.name}: writing failed: {exc}"
                with self.lock:
                    if failed is not None:
                        self.write_errors += 1
                        self._errors.append(failed)
                    elif written:
                        self.messages += written
                        self.bytes += len(copied.raw.payload)
                    else:
                        self.skipped += 1
                        if refused is not None:
                            self._errors.append(refused)
                    self.queued_bytes -= _queued_size(copied)
                    self._give_back(copied.name, copied.raw.payload)
                    if self.queued_bytes < resume_below:
                        self.has_room.notify_all()

    def _write(self, copied: _Copied) -> int:
        """Write one change; the messages written."""
        name, raw = copied.name, copied.raw
        if self.bag is not None:
            return self.bag.write(name, raw)
        channel = self.channels.get((name, raw.schema_text))
        if channel is None:
            schema = self.schemas.get(raw.schema_text)
            if schema is None:
                kind = self.decoder.layout(raw.schema_text, f"segment {name!r}").kind
                schema = self.schemas[raw.schema_text] = self.writer.register_schema(
                    name=kind, encoding=SCHEMA_ENCODING, data=raw.schema_text
                )
            channel = self.channels[(name, raw.schema_text)] = self.writer.register_channel(
                topic=name,
                message_encoding=MESSAGE_ENCODING,
                schema_id=schema,
                metadata={
                    "dynamic": copied.dynamic,
                    "slots": copied.slots,
                    **({"history": copied.history} if copied.history else {}),
                },
            )
        self.writer.add_message(
            channel_id=channel,
            log_time=raw.mtime_ns,
            data=raw.payload,
            publish_time=time.time_ns(),
            sequence=raw.change & 0xFFFF_FFFF,
        )
        return 1

    def finish(self) -> None:
        """Stop copying, write what is queued, then the file's index and footer: a complete,
        indexed file."""
        self.stop.set()
        with self.lock:
            self.has_room.notify_all()
        for name in self.follower.stop():
            self._error(name, TimeoutError("its copying thread did not stop within 5 s"))
        with self.lock:
            self.writing = False
            self.has_work.notify()
        self.writer_thread.join()
        if self.bag is not None:
            self.bag.finish()
        self.writer.finish()

    def progress(self) -> dict[str, Any]:
        with self.lock:
            return {
                "objects": len(self.follower.followed),
                "messages": self.messages,
                "bytes": self.bytes,
                "dropped": self.dropped,
                "write_errors": self.write_errors,
                "skipped": self.skipped,
                "queued_bytes": self.queued_bytes,
            }


class _Copier:
    """The Watch of one recorded object: each change, copied into the recorder's queue."""

    def __init__(self, recorder: Recorder, obj: SharedObject) -> None:
        self.recorder, self.obj = recorder, obj
        self.last_change: int | None = None
        self.dynamic = "true" if isinstance(obj, SharedDynamicObject) else "false"
        self.slots = str(obj.slots)
        self.history = str(obj.history or "")

    def changed(self) -> None:
        recorder, obj = self.recorder, self.obj
        buffer = recorder._room_for_a_copy(obj.name)
        if buffer is None:  # stopping
            return
        if obj.history and not recorder.rate_limited:
            # Every value the ring still holds since the last: what it no longer held is lost
            with recorder.lock:
                recorder._give_back(obj.name, buffer)
            lost = obj.lost
            raws = obj.fetch_new_raw()
            missed = obj.lost - lost
            for raw in raws:
                recorder._enqueue(
                    _Copied(obj.name, raw, self.dynamic, self.slots, self.history, missed)
                )
                missed = 0
            if missed:  # every one of them lost: still counted
                with recorder.lock:
                    recorder.dropped += missed
            return
        raw = obj.fetch_raw(into=buffer)
        if raw.change == self.last_change:
            with recorder.lock:
                recorder._give_back(obj.name, raw.payload)
            return
        missed = 0
        if self.last_change is not None and not recorder.rate_limited:
            missed = max(0, raw.change - self.last_change - 1)
        recorder._enqueue(_Copied(obj.name, raw, self.dynamic, self.slots, self.history, missed))
        self.last_change = raw.change

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# play
# ---------------------------------------------------------------------------------------------
class Message:
    """One recorded change: where it goes, when, and its bytes."""

    __slots__ = ("channel", "data", "log_time")

    def __init__(self, channel: int, log_time: int, data: bytes) -> None:
        self.channel, self.log_time, self.data = channel, log_time, data


class Recording:
    """An MCAP file's channels that can be played (ours, and rosbag2's: CDR messages with their
    definitions), and its messages as a stream: never all in memory, since a recording may be
    bigger than the machine's memory.

    ``messages()`` yields them in log-time order from a compressed (chunked) file, through its
    chunk index; in file order from an uncompressed one, which ``record`` writes as changes
    arrive (so in log-time order, but for changes of different objects a few microseconds
    apart). A file cut short (its recorder killed, the machine's power lost) has no index and
    no footer: it is read as a stream, every complete message (of a compressed file, every
    complete chunk) before the cut is played, and ``truncated`` says so.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.truncated = False
        #: What the reader said where a truncated file ends.
        self.cut = ""
        self.skipped: list[str] = []
        self.schemas: dict[int, Any] = {}
        self.channels: dict[int, Any] = {}
        #: The channels that are rosbag2's (CDR messages), and the types their schemas define.
        self.ros2: set[int] = set()
        self.bag_types: Any = None  # a shared_object.ros2.bag.BagTypes, once a channel needs it
        #: Messages of ours in the file (for a truncated one: before the cut).
        self.count = 0
        self._chunked = False
        self._decoder = Decoder()
        self._scan()

    def _scan(self) -> None:
        """Schemas, channels and the count of messages: from the summary, or a first pass."""
        _mcap()
        import mcap.exceptions
        import mcap.reader

        with open(self.path, "rb") as f:
            if f.read(8) != b"\x89MCAP0\r\n":
                msg = f"{self.path} is not an MCAP file (it does not start with the MCAP magic)"
                raise LayoutError(msg)
            f.seek(0)
            try:
                summary = mcap.reader.make_reader(f).get_summary()  # no footer: raises
            except (mcap.exceptions.McapError, ValueError, EOFError, OSError, KeyError):
                summary = None
            if summary is None or summary.statistics is None:
                self.truncated = True
                for _ in self._stream():
                    self.count += 1
                return
        self._chunked = bool(summary.chunk_indexes)
        self.schemas = dict(summary.schemas)
        for channel in summary.channels.values():
            if self._ours(self.schemas.get(channel.schema_id), channel):
                self.channels[channel.id] = channel
                self.count += summary.statistics.channel_message_counts.get(channel.id, 0)

    def messages(self) -> Iterator[Message]:
        """Every message of ours, in order (see the class docstring), read as it goes."""
        if self.truncated:
            yield from self._stream()
            return
        import mcap.reader

        with open(self.path, "rb") as f:
            reader = mcap.reader.make_reader(f)
            for _, channel, message in reader.iter_messages(log_time_order=self._chunked):
                if channel.id in self.channels:
                    yield Message(channel.id, message.log_time, bytes(message.data))

    def _stream(self) -> Iterator[Message]:
        """The messages of ours before the cut of a file that ends without its index, in file
        order; the schemas and channels as they come."""
        import mcap.records
        import mcap.stream_reader

        with open(self.path, "rb") as f:
            try:
                for record in mcap.stream_reader.StreamReader(f).records:
                    if isinstance(record, mcap.records.Schema):
                        self.schemas[record.id] = record
                    elif isinstance(record, mcap.records.Channel):
                        if self._ours(self.schemas.get(record.schema_id), record):
                            self.channels[record.id] = record
                    elif (
                        isinstance(record, mcap.records.Message)
                        and record.channel_id in self.channels
                    ):
                        yield Message(record.channel_id, record.log_time, bytes(record.data))
            except Exception as exc:  # noqa: BLE001 - whatever the reader raises at the cut, what came before is whole
                self.cut = f"{type(exc).__name__}: {exc}"

    def _ours(self, schema: Any, channel: Any) -> bool:
        """Whether a channel is one we can play (ours, or rosbag2's); if not, say why once in
        ``skipped``."""
        if (
            schema is not None
            and schema.encoding == SCHEMA_ENCODING
            and channel.message_encoding == MESSAGE_ENCODING
        ):
            return True
        from .ros2 import bag

        what = f"channel {channel.topic!r}"
        if bag.is_ros2(schema, channel):
            try:
                if self.bag_types is None:
                    self.bag_types = bag.BagTypes()
                problem = self.bag_types.add(schema, channel)
            except MissingExtraError as exc:
                problem = str(exc)
            if problem is None:
                self.ros2.add(channel.id)
                return True
            self._skip(what, f"{what} ({schema.name}): {problem}: skipped")
            return False
        encoding = schema.encoding if schema is not None else "none"
        self._skip(
            what,
            f"{what} is neither shared_object's nor rosbag2's (schema encoding {encoding!r}, "
            f"message encoding {channel.message_encoding!r}): skipped",
        )
        return False

    def _skip(self, what: str, why: str) -> None:
        if not any(what in s for s in self.skipped):
            self.skipped.append(why)

    def decode(self, message: Message, source: str) -> Any:
        """A message's value; LayoutError (MessageDecodeError for a ROS 2 one) if it is damaged."""
        channel = self.channels[message.channel]
        schema = self.schemas[channel.schema_id]
        if message.channel in self.ros2:
            return self.bag_types.decode(message.data, schema.name)
        return self._decoder.decode(schema.data, message.data, source)

    def object_name(self, channel_id: int) -> str:
        """The object a channel plays into, unless renamed: ours, the object it was recorded
        from; rosbag2's, see ``shared_object.ros2.bag.object_name``."""
        channel = self.channels[channel_id]
        if channel_id in self.ros2:
            from .ros2 import bag

            return bag.object_name(channel)
        return str(channel.topic)

    def topics(self) -> dict[str, list[int]]:
        """topic -> the ids of its channels of ours."""
        out: dict[str, list[int]] = {}
        for channel_id, channel in self.channels.items():
            out.setdefault(channel.topic, []).append(channel_id)
        return out


class Player:
    """Assigns a recording's messages to shared objects with the recorded timing.

    ``renames`` maps a channel's topic (or the object it would play into) to another object's
    name. A rosbag2 channel's values may not all fit one object's kind (an Image whose size
    changes, a String longer than the first): its object is then created again as a
    SharedDynamicObject, if this player created it.
    """

    def __init__(
        self, recording: Recording, renames: dict[str, str], say: Callable[[str], None]
    ) -> None:
        self.recording = recording
        self.renames = renames
        self.say = say
        self.objects: dict[int, SharedObject] = {}  # channel id -> its object
        self.created: set[str] = set()  # the names of the objects this player created
        self.refused: set[int] = set()  # channels whose object refused a value: said once
        self.played = 0
        self.corrupt = 0

    def _name_of(self, channel_id: int) -> str:
        channel = self.recording.channels[channel_id]
        name = self.recording.object_name(channel_id)
        return self.renames.get(channel.topic, self.renames.get(name, name))

    def _object_for(self, channel_id: int, value: Any) -> SharedObject:
        obj = self.objects.get(channel_id)
        if obj is not None:
            return obj
        channel = self.recording.channels[channel_id]
        name = self._name_of(channel_id)
        kinds = len(self.recording.topics().get(channel.topic, []))
        dynamic = channel.metadata.get("dynamic") == "true" or kinds > 1
        slots = 1 if channel.metadata.get("slots") == "1" and not dynamic else 2
        history = str(channel.metadata.get("history", ""))
        history_n = int(history) if history.isdigit() and not dynamic else None
        for other_id, other in self.objects.items():  # the topic's other channels share one object
            if self.recording.channels[other_id].topic == channel.topic:
                self.objects[channel_id] = other
                return other
        if dynamic:
            obj = SharedDynamicObject(name, data=value)
        else:
            try:
                obj = SharedObject.create(name, value, slots=slots, history=history_n)
                self.created.add(name)
            except SharedObjectError:
                obj = SharedObject(name, data=value)  # exists: attach and assign (same kind only)
        self.objects[channel_id] = obj
        return obj

    def _as_dynamic(self, channel_id: int, value: Any) -> SharedObject:
        """A rosbag2 channel's object, created again as a SharedDynamicObject holding ``value``."""
        old = self.objects[channel_id]
        old.close()
        old.unlink()
        self.created.discard(old.name)
        obj = SharedDynamicObject(old.name, data=value)
        for other_id, other in list(self.objects.items()):
            if other is old:
                self.objects[other_id] = obj
        return obj

    def play(self, start_s: float, end_s: float | None, rate: float, stop: threading.Event) -> None:
        begin_ns = end_ns = t0 = 0
        for index, message in enumerate(self.recording.messages()):
            if index == 0:  # times count from the first message
                begin_ns = message.log_time + int(start_s * 1e9)
                end_ns = -1 if end_s is None else message.log_time + int(end_s * 1e9)
                t0 = time.monotonic_ns()
            if message.log_time < begin_ns:
                continue
            if (end_ns >= 0 and message.log_time > end_ns) or stop.is_set():
                break
            due = t0 + int((message.log_time - begin_ns) / rate)
            while (wait := due - time.monotonic_ns()) > 0 and not stop.is_set():
                time.sleep(min(wait / 1e9, 0.5))
            self._assign(message)

    def _assign(self, message: Message) -> None:
        channel = self.recording.channels[message.channel]
        source = f"{self.recording.path}: a message of channel {channel.topic!r}"
        try:
            value = self.recording.decode(message, source)
        except LayoutError as exc:
            self.corrupt += 1
            self.say(f"warning: {source}: {exc}: skipped")
            return
        try:
            obj = self._object_for(message.channel, value)
            try:
                obj.assign(value)
            except (TypeMismatchError, CapacityError):
                if message.channel not in self.recording.ros2 or obj.name not in self.created:
                    raise
                self._as_dynamic(message.channel, value)
        except SharedObjectError as exc:
            self.corrupt += 1
            if message.channel not in self.refused:  # the next ones would say the same
                self.refused.add(message.channel)
                self.say(f"warning: {channel.topic!r}: {exc}: skipped (and the like after)")
            return
        self.played += 1

    def close(self) -> None:
        for obj in set(self.objects.values()):
            obj.close()

    def __enter__(self) -> Player:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_messages(path: str) -> Iterator[tuple[str, int, Any]]:
    """(object name, log time in ns, value) of every message in a recording (ours, or a rosbag2
    file's), in order."""
    recording = Recording(path)
    for message in recording.messages():
        value = recording.decode(message, path)
        yield recording.object_name(message.channel), message.log_time, value


__all__ = [
    "MESSAGE_ENCODING",
    "SCHEMA_ENCODING",
    "Player",
    "Recorder",
    "Recording",
    "iter_messages",
]
