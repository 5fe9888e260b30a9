"""The bridge on a shaped 100 Mbit/s link between two "hosts" (tests/hosts.py): commands keep
their time while raw frames fill the link, and a JPEG-encoded frame arrives whole.

The set-up is benchmarks/bench_link.py's (a producer of the demo's frame at 30 Hz and a command
at 100 Hz on host A, consumers on host B), run for a few seconds. Its bounds are the link's
physics, measured in the same run, not the machine's speed: a raw 480x848x3 frame takes 98 ms to
cross 100 Mbit/s, so a command that waited behind one would show it, and raw frames cannot come
faster than about 10 a second.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
_CI = os.environ.get("CI", "").lower() == "true"


def _why_not() -> str | None:
    from hosts import missing

    if not BENCHMARKS.is_dir():  # inside the image: the benchmarks are not shipped
        return f"{BENCHMARKS} is not here"
    why = missing()
    if why:
        return f"two hosts on a shaped link {why}: run the suite as root (tests/run.sh does)"
    for module, extra in (("zenoh", "zenoh"), ("simplejpeg", "zenoh"), ("skimage", "integration")):
        try:
            __import__(module)
        except ImportError:
            return f"needs {module}: pip install -e '.[{extra}]'"
    if shutil.which("ip") is None:
        return "needs iproute2"
    return None


_WHY = _why_not()
if _WHY is not None:
    if _CI:
        pytest.fail(f"CI=true: the shaped-link tests must run: {_WHY}", pytrace=False)
    pytest.skip(_WHY, allow_module_level=True)

sys.path.insert(0, str(BENCHMARKS))
import bench_link  # noqa: E402
from hosts import TwoHosts  # noqa: E402

RATE = 100  # Mbit/s


@pytest.fixture(scope="module")
def link() -> Iterator[TwoHosts]:
    with TwoHosts(f"{RATE}mbit") as hosts:
        yield hosts


def test_commands_keep_their_time_while_raw_frames_fill_the_link(link: TwoHosts) -> None:
    result = bench_link.run_cell(link, bench_link.Cell(RATE, "raw", seconds=5.0, warmup=2.0))
    frame_ms = result.transmission_ms(RATE)
    capacity = 1e3 / frame_ms  # raw frames a second the link can carry: about 10
    assert result.in_order and not result.errors
    # The link is full of frames: they come as fast as it carries them, never more.
    assert 0.5 * capacity <= result.fps <= 1.05 * capacity, result
    # Commands do not wait behind them: each arrives, in order, sooner than one frame crosses.
    assert result.cmds >= 90, result  # of 100 a second, as distinct values
    assert result.cmd_age[1] < frame_ms, (result, frame_ms)
    assert result.cmd_age[0] < result.frame_age[0] / 10, result


def test_a_jpeg_frame_arrives_with_its_kind_and_the_picture(link: TwoHosts) -> None:
    result = bench_link.run_cell(link, bench_link.Cell(RATE, "jpeg:90", seconds=4.0, warmup=2.0))
    # Each frame arrives as the consumer reads it (480x848x3 uint8, or it is an error in the
    # result), close to what was sent, and more of them than raw frames could ever be.
    assert not result.errors and result.in_order, result
    assert result.psnr >= 35, result
    assert result.fps > 2 * 1e3 / result.transmission_ms(RATE), result
    assert result.cmds >= 90 and result.cmd_age[1] < result.transmission_ms(RATE), result
    exporter = result.bridge_output[0]
    assert "lk-frame: ['frame'] (ndarray[uint8, (480, 848, 3)]) as jpeg:90" in exporter or (
        '"encoding": "jpeg:90"' in exporter
    ), exporter[-2000:]
