"""Runs scripted sequences of SharedObject calls on one library and prints what each call did.

The differential test (test_reference_parity.py) runs this same file twice: once with this
repository's interpreter on ``shared_object``, once with a separate virtual environment's on the
reference (``real-robot==0.2.1``, ``real_robot.utils.multiprocessing.shared_object``), and
compares the two outputs call by call. It imports nothing from the tests, since the reference's
interpreter has neither pytest nor shared_object.

Usage: ``python reference_driver.py ours|reference PREFIX`` prints one JSON object: scenario id ->
list of outcomes, one per step. ``... --child ours|reference`` is a helper process that runs the
steps of handles named ``child:...`` (sent as JSON lines on stdin), so that sequences cross
processes.

A step is ``[handle, op, argument]``; handles are names of this script's choosing, all on the
scenario's segment but for ``handle@suffix``, which is on a segment of its own. Values are
Python expressions evaluated here (with ``np`` and ``Pose``), so both libraries get equal values.
An outcome is ``["value", description]`` or ``["raised", [builtin exception names]]``: the
builtin classes the exception is an instance of, which is what a caller can catch.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import struct
import subprocess
import sys
import warnings
from typing import Any

import numpy as np

warnings.simplefilter("ignore")  # the reference warns about implicit overwrites and copies
os.environ.setdefault("LOGURU_LEVEL", "ERROR")  # the reference logs through loguru

try:
    from sapien import Pose
except ImportError:  # pragma: no cover - the test skips the pose scenario without sapien
    Pose = None


def load(library: str) -> tuple[type, type]:
    if library == "ours":
        from shared_object import SharedDynamicObject, SharedObject
    else:
        from real_robot.utils.multiprocessing.shared_object import SharedDynamicObject, SharedObject
    return SharedObject, SharedDynamicObject


#: What the scenarios compare: the reference's 16 array dtypes.
DTYPES = [
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
    "float128",
    "complex64",
    "complex128",
    "complex256",
]


def _array(dtype: str, seed: int) -> str:
    return f"(np.arange(24).reshape(2, 3, 4) * {seed + 1} % 7).astype(np.{dtype})"


def _lifecycle(
    v1: str, v2: str, other: str, fn: str, init_size: int | None = None
) -> list[list[Any]]:
    """The common life of an object, across two handles and a child process.

    ``v1``/``v2``: two values of one kind; ``other``: a value of another kind (a refused assign);
    ``fn``: a function for fetch(fn).
    """
    new = ["a", "new", v1] if init_size is None else ["a", "new_sized", [v1, init_size]]
    return [
        new,
        ["b", "attach", None],
        ["b", "modified", None],
        ["b", "fetch", None],
        ["a", "assign", v2],
        ["a", "modified", None],
        ["a", "triggered", None],
        ["b", "modified", None],
        ["b", "mtime_moved", None],
        ["b", "triggered", None],
        ["b", "triggered", None],
        ["b", "fetch", None],
        ["b", "mtime_moved", None],
        ["b", "fetch_fn", fn],
        ["b", "trigger", None],
        ["b", "modified", None],
        ["b", "triggered", None],
        ["a", "modified", None],
        ["a", "triggered", None],
        ["child:c", "attach", None],
        ["child:c", "fetch", None],
        ["child:c", "modified", None],
        ["child:c", "assign", v1],
        ["a", "modified", None],
        ["a", "fetch", None],
        ["child:c", "modified", None],
        ["child:c", "trigger", None],
        ["a", "triggered", None],
        ["child:c", "triggered", None],
        ["a", "assign", other],
        ["a", "fetch", None],
        ["b", "modified", None],
        ["b", "pickled_fetch", None],
        ["a", "assign", v2],
        ["child:c", "fetch", None],
        ["b", "close", None],
        ["b", "fetch", None],
    ]


def scenarios() -> dict[str, list[list[Any]]]:
    s: dict[str, list[list[Any]]] = {}
    s["none"] = _lifecycle("None", "None", "1", "lambda x: x is None")
    s["bool"] = _lifecycle("True", "False", "1", "lambda x: not x")
    s["int"] = _lifecycle("7", "-(2**62)", "1.5", "lambda x: x + 1")
    s["float"] = _lifecycle("0.25", "-1e300", "'x'", "lambda x: x * 2")
    s["complex"] = _lifecycle("1+2j", "-3.5j", "1.0", "lambda x: x.imag")
    s["str"] = _lifecycle("'hello'", "'wörld'", "b'hello'", "lambda x: x.upper()")
    s["bytes"] = _lifecycle("b'\\x00ab\\xff'", "b'cd'", "'cd'", "lambda x: x[::-1]")
    s["bytearray"] = _lifecycle(
        "bytearray(b'ab')", "bytearray(b'\\x00\\x00')", "7", "lambda x: len(x)"
    )
    if Pose is not None:
        s["pose"] = _lifecycle(
            "Pose([1, 2, 3], [0, 1, 0, 0])",
            "Pose([0.5, 0, -1], [1, 0, 0, 0])",
            "(1, 2)",
            "lambda x: x.p.tolist()",
        )
    for dtype in DTYPES:
        s[f"ndarray-{dtype}"] = _lifecycle(
            _array(dtype, 0),
            _array(dtype, 1),
            "np.zeros((2, 3, 5), np.float64)"
            if dtype != "float64"
            else "np.zeros((2, 3, 4), np.float32)",
            "lambda x: x[..., 0]",
        )
    s["ndarray-reductions"] = [
        ["a", "new", "np.arange(12, dtype=np.uint8).reshape(3, 4)"],
        ["b", "attach", None],
        ["b", "fetch_fn", "lambda x: int(x.sum())"],
        ["b", "fetch_fn", "lambda x: x + 1"],
        ["b", "fetch_fn", "lambda x: x.flags.writeable"],
        ["b", "fetch_fn", "lambda x: x[::2, 1:3]"],
        ["a", "assign", "np.arange(24, dtype=np.uint8).reshape(3, 8)[:, ::2]"],  # not contiguous
        ["b", "fetch", None],
        ["a", "assign", "np.zeros((4, 3), np.uint8)"],
        ["a", "assign", "np.zeros((3, 4), np.int8)"],
        ["a", "assign", "[[0] * 4] * 3"],
        ["b", "fetch", None],
    ]
    # str/bytes capacity: the reference sizes a string's buffer from init_size and the first value.
    s["str-lengths"] = [
        ["a", "new", "'abc'"],
        ["a", "assign", "'x' * 49"],
        ["a", "fetch", None],
        ["a", "assign", "''"],
        ["a", "fetch", None],
        ["a", "assign", "'y' * 60"],
        ["a", "fetch", None],
        ["a", "assign", "'z' * 101"],
        ["a", "fetch", None],
    ]
    s["bytes-long-first"] = [
        ["a", "new", "b'q' * 80"],
        ["a", "assign", "b'r' * 80"],
        ["a", "fetch", None],
        ["a", "assign", "b's' * 79"],
        ["a", "fetch", None],
        ["a", "assign", "b't' * 170"],
        ["a", "fetch", None],
    ]
    s["str-init-size"] = [
        ["a", "new_sized", ["'abc'", 1000]],
        ["a", "assign", "'x' * 499"],
        ["b", "attach", None],
        ["b", "fetch", None],
        ["a", "assign", "'x' * 900"],
        ["b", "fetch", None],
    ]
    # Lossless conversions, and values the reference does not take.
    s["numbers"] = [
        ["a", "new", "1.5"],
        ["a", "assign", "3"],
        ["a", "fetch", None],
        ["a", "assign", "True"],
        ["a", "fetch", None],
        ["i@int", "new", "3"],
        ["i@int", "assign", "2.0"],
        ["i@int", "assign", "np.int32(4)"],
        ["i@int", "fetch", None],
        ["i@int", "assign", "2**63"],
        ["i@int", "fetch", None],
        ["z@complex", "new", "1j"],
        ["z@complex", "assign", "2"],
        ["z@complex", "fetch", None],
        ["y@bytearray", "new", "bytearray(b'ab')"],
        ["y@bytearray", "assign", "b'cd'"],
        ["y@bytearray", "fetch", None],
    ]
    s["numpy-scalar"] = [["a", "new", "np.float32(1.5)"], ["a", "fetch", None]]
    s["unsupported"] = [["a", "new", "object()"], ["b@array", "new", "np.array([object()])"]]
    s["dict"] = [["a", "new", "{'pose': np.zeros(7), 'seq': 1}"], ["a", "fetch", None]]
    s["tuple"] = [["a", "new", "(1, 2.0)"], ["a", "fetch", None]]
    s["list"] = [["a", "new", "[1, 'x']"], ["a", "fetch", None]]
    s["set"] = [["a", "new", "{1, 2}"], ["a", "fetch", None]]
    s["datetime-array"] = [["a", "new", "np.zeros(3, 'datetime64[s]')"], ["a", "fetch", None]]
    s["dynamic"] = [["a", "new_dynamic", "1"], ["a", "assign", "'now a str'"], ["a", "fetch", None]]
    s["trigger-object"] = [
        ["a", "attach", None],  # no segment: creates a trigger object
        ["a", "fetch", None],
        ["a", "trigger", None],
        ["a", "triggered", None],  # the reference's own example: True
        ["a", "triggered", None],
        ["b", "attach", None],
        ["b", "modified", None],
        ["a", "trigger", None],
        ["b", "triggered", None],
        ["a", "modified", None],
        ["a", "fetch", None],
        ["a", "modified", None],
        ["child:c", "attach", None],
        ["child:c", "trigger", None],
        ["a", "triggered", None],
        ["b", "triggered", None],
        ["child:c", "triggered", None],
    ]
    s["reattach-with-data"] = [
        ["a", "new", "np.ones(3)"],
        ["b", "new", "np.zeros(3)"],  # attaches and assigns
        ["a", "modified", None],
        ["a", "fetch", None],
        ["c", "new", "np.zeros(4)"],  # attaches; another shape: refused
    ]
    return s


CREATING = ("new", "new_sized", "new_dynamic", "attach")


def value_of(expression: str) -> Any:
    return eval(expression, {"np": np, "Pose": Pose})  # noqa: S307 - the scenarios above, nothing else


def _returns_self(obj: Any, result: Any) -> Any:
    return "self" if result is obj else describe(result)


def _close(obj: Any) -> str:
    obj.close()
    return "closed"


#: What a step does to an existing handle: (handle, argument) -> outcome.
OPS: dict[str, Any] = {
    "fetch": lambda obj, arg: describe(obj.fetch()),
    "fetch_fn": lambda obj, arg: describe(obj.fetch(value_of(arg))),
    "pickled_fetch": lambda obj, arg: describe(pickle.loads(pickle.dumps(obj)).fetch()),  # noqa: S301
    "assign": lambda obj, arg: _returns_self(obj, obj.assign(value_of(arg))),
    "trigger": lambda obj, arg: _returns_self(obj, obj.trigger()),
    "modified": lambda obj, arg: describe(obj.modified),
    "triggered": lambda obj, arg: describe(obj.triggered),
    "close": lambda obj, arg: _close(obj),
}


def describe(value: Any) -> Any:
    """A JSON description that tells apart what a caller could tell apart."""
    if isinstance(value, np.ndarray):
        return [
            "ndarray",
            value.dtype.str,
            list(value.shape),
            _bytes_of(value).hex(),
            value.flags.writeable,
        ]
    if isinstance(value, np.generic):
        return ["numpy", type(value).__name__, np.asarray(value).tobytes().hex()]
    if Pose is not None and isinstance(value, Pose):
        return [
            "pose",
            np.asarray(value.p, np.float32).tobytes().hex(),
            np.asarray(value.q, np.float32).tobytes().hex(),
        ]
    if isinstance(value, dict):
        return ["dict", [[describe(k), describe(v)] for k, v in value.items()]]
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [describe(v) for v in value]]
    if isinstance(value, (set, frozenset)):
        return [type(value).__name__, sorted(repr(v) for v in value)]
    if isinstance(value, (bytes, bytearray)):
        return [type(value).__name__, bytes(value).hex()]
    if isinstance(value, (bool, int, float, complex, str)) or value is None:
        return [type(value).__name__, repr(value)]
    return ["object", type(value).__name__]


def _bytes_of(array: np.ndarray) -> bytes:
    """The bytes that hold the array's values: x86's long doubles are 10 bytes padded to 16, and
    the padding holds whatever the copy left there."""
    raw = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    if (
        array.dtype.kind in "fc"
        and array.dtype.itemsize // (2 if array.dtype.kind == "c" else 1) == 16
    ):
        return raw.reshape(-1, 16)[:, :10].tobytes()
    return raw.tobytes()


#: The builtin exceptions a caller might catch, most specific first.
_BUILTINS = [
    c for c in vars(builtins).values() if isinstance(c, type) and issubclass(c, BaseException)
]


def raised(exc: BaseException) -> list[str]:
    names = sorted(
        {
            c.__name__
            for c in _BUILTINS
            if isinstance(exc, c) and c not in (BaseException, Exception)
        }
    )
    if isinstance(exc, struct.error):
        names.append("struct.error")
    return names or ["Exception"]


class Runner:
    """Runs steps on handles of one library; ``child:`` handles live in a helper process."""

    def __init__(self, library: str, prefix: str, *, in_child: bool = False) -> None:
        self.library = library
        self.SharedObject, self.SharedDynamicObject = load(library)
        self.prefix = prefix
        self.handles: dict[str, Any] = {}
        self.mtimes: dict[str, int] = {}
        self.child: subprocess.Popen[str] | None = None
        self.in_child = in_child

    def run(self, scenario: str, steps: list[list[Any]]) -> list[Any]:
        name = f"{self.prefix}-{scenario}"
        outcomes = [self.step(name, handle, op, arg) for handle, op, arg in steps]
        self.finish(name, {handle.split("@")[1] for handle, _, _ in steps if "@" in handle})
        return outcomes

    def step(self, name: str, handle: str, op: str, arg: Any) -> Any:
        if "@" in handle:
            name += "-" + handle.split("@")[1]
        if handle.startswith("child:") and not self.in_child:
            return self.in_helper([name, handle, op, arg])
        if handle not in self.handles and op not in CREATING:
            return ["no handle"]  # its creation failed, as the outcome of that step says
        try:
            return ["value", self.call(name, handle, op, arg)]
        except Exception as exc:  # noqa: BLE001 - what was raised is the outcome
            return ["raised", raised(exc)]

    def call(self, name: str, handle: str, op: str, arg: Any) -> Any:
        if op in CREATING:
            cls = self.SharedDynamicObject if op == "new_dynamic" else self.SharedObject
            if op == "attach":
                obj = cls(name)
            elif op == "new_sized":
                obj = cls(name, data=value_of(arg[0]), init_size=arg[1])
            else:
                obj = cls(name, data=value_of(arg))
            self.handles[handle] = obj
            self.mtimes[handle] = obj.mtime
            return "handle"
        obj = self.handles[handle]
        if op == "mtime_moved":  # did this handle's mtime change since the last look?
            before, self.mtimes[handle] = self.mtimes[handle], obj.mtime
            return describe(obj.mtime != before)
        return OPS[op](obj, arg)

    def in_helper(self, request: list[Any]) -> Any:
        if self.child is None:
            self.child = subprocess.Popen(  # noqa: S603
                [sys.executable, __file__, "--child", self.library, self.prefix],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        assert self.child.stdin is not None and self.child.stdout is not None
        self.child.stdin.write(json.dumps(request) + "\n")
        self.child.stdin.flush()
        return json.loads(self.child.stdout.readline())

    def finish(self, name: str, suffixes: set[str]) -> None:
        if self.child is not None:
            self.in_helper([name, "", "finish", None])
        for obj in self.handles.values():
            try:
                obj.close()
            except Exception:  # noqa: BLE001, S110 - already closed, or the reference's own failure
                pass
        self.handles.clear()
        self.mtimes.clear()
        for path in [name, *(f"{name}-{suffix}" for suffix in suffixes)]:
            try:
                os.unlink(f"/dev/shm/{path}")
            except FileNotFoundError:
                pass


def serve_child(library: str, prefix: str) -> None:
    runner = Runner(library, prefix, in_child=True)
    for line in sys.stdin:
        name, handle, op, arg = json.loads(line)
        if op == "finish":
            for obj in runner.handles.values():
                try:
                    obj.close()
                except Exception:  # noqa: BLE001, S110
                    pass
            runner.handles.clear()
            answer: Any = ["value", "finished"]
        else:
            answer = runner.step(name, handle, op, arg)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main() -> None:
    if sys.argv[1] == "--child":
        serve_child(sys.argv[2], sys.argv[3])
        return
    library, prefix = sys.argv[1], sys.argv[2]
    runner = Runner(library, prefix)
    results = {scenario: runner.run(scenario, steps) for scenario, steps in scenarios().items()}
    if runner.child is not None:
        runner.child.stdin.close()  # type: ignore[union-attr]
        runner.child.wait(30)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
