"""The shared-object command, called in-process through main(argv)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import helpers
import numpy as np
import pytest
from helpers import PROCESS_DEADLINE

from shared_object import SharedObject, _segment
from shared_object.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_ls_lists_kind_and_holders(shm_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with SharedObject.create(shm_name, np.zeros((4, 3), np.float32)):
        code, out = run(capsys, "ls", "--json")
        assert code == 0
        row = next(r for r in json.loads(out) if r["name"] == shm_name)
        assert (
            row["kind"] == "ndarray[float32, (4, 3)]"
            and row["held"] is True
            and row["mode"] == "0o600"
        )
        code, out = run(capsys, "ls")
        assert shm_name in out and "yes" in out


def test_inspect_decodes_header_and_value(
    shm_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with SharedObject.create(shm_name, {"cmd": "go", "gain": 2.5}) as obj:
        obj.assign({"cmd": "stop", "gain": 1.0})
        code, out = run(capsys, "inspect", shm_name, "--json")
    info = json.loads(out)
    assert code == 0
    assert info["header"]["changes"] == 1 and info["header"]["current_slot"] == 1
    assert info["header"]["single_slot"] is False
    assert info["value"] == "{'cmd': 'stop', 'gain': 1.0}"


def test_ls_inspect_and_top_show_a_history_and_what_its_readers_lost(
    shm_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with (
        SharedObject.create(shm_name, 0, history=8) as writer,
        SharedObject.attach(shm_name) as reader,
    ):
        reader.fetch_new()
        for i in range(1, 21):  # 20 values, 8 kept: the reader loses 12
            writer.assign(i)
        assert reader.fetch_new() == list(range(13, 21))
        code, out = run(capsys, "ls", "--json")
        row = next(r for r in json.loads(out) if r["name"] == shm_name)
        assert (row["history"], row["lost"]) == (8, 12)
        code, out = run(capsys, "ls")
        assert "8 (12 lost)" in out
        code, out = run(capsys, "inspect", shm_name, "--json")
        ring = json.loads(out)["header"]["ring"]
        assert (
            ring["slots"] == 8
            and ring["holds_changes"] == [13, 20]
            and ring["lost_by_readers"] == 12
        )
        assert json.loads(out)["header"]["current_slot"] == 20 % 8
        code, out = run(capsys, "top", "--once", "--json", "--interval", "0.1", shm_name)
        (row,) = json.loads(out)
        assert (row["history"], row["lost"]) == (8, 12)


@pytest.mark.parametrize(
    ("value", "preview"),
    [
        (
            np.zeros(2, [("x", "<f4"), ("y", "<i2")]),
            "first=[(0.0, 0), (0.0, 0)]",
        ),  # used to crash: no min()
        (np.array([b"ab", b"c"]), "first=[b'ab', b'c']"),
        (np.array(["x", "yz"]), "first=['x', 'yz']"),
        (np.arange(4.0), "min=0.0 max=3.0"),
        (np.zeros((0, 3)), "(empty)"),
    ],
)
def test_inspect_previews_every_kind_of_array(
    shm_name: str, capsys: pytest.CaptureFixture[str], value: np.ndarray[Any, Any], preview: str
) -> None:
    with SharedObject.create(shm_name, value):
        code, out = run(capsys, "inspect", shm_name, "--json")
    assert code == 0
    assert json.loads(out)["value"].endswith(preview)


def test_inspect_of_a_corrupt_segment_fails_cleanly(
    shm_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    SharedObject.create(shm_name, 1).close()
    with open(os.path.join(_segment.SHM_DIR, shm_name), "r+b") as f:
        f.write(b"\x93SHOBJ\x63\x00")  # version 99
    code, out = run(capsys, "inspect", shm_name)
    assert code == 1 and "layout version 99" in out


def test_inspect_of_a_missing_name_says_so(
    shm_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["inspect", shm_name])
    assert code == 1 and f"no shared object named {shm_name!r}" in capsys.readouterr().err


def test_ls_skips_a_segment_removed_while_listing(
    shm_name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared_object.cli import segments

    monkeypatch.setattr(
        segments, "segment_names", lambda: [shm_name]
    )  # listed, gone before the stat
    code, out = run(capsys, "ls", "--json")
    assert code == 0 and json.loads(out) == []


def test_rm_removes_names_and_reports_missing(
    shm_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    SharedObject.create(shm_name, 1).close()
    assert run(capsys, "rm", shm_name) == (0, f"removed {shm_name}\n")
    code = main(["rm", shm_name])
    assert code == 1 and "no shared object named" in capsys.readouterr().err


def test_rm_leaves_files_of_other_programs_alone(
    shm_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # /dev/shm also holds PulseAudio's, PostgreSQL's and multiprocessing's memory: a mistyped
    # name must not delete it. `gc` never looks at such files; `rm` used to remove them.
    foreign, ours = shm_name, f"{shm_name}-ours"
    path = _segment.segment_path(foreign)
    with open(path, "wb") as f:
        f.write(b"another program's data" * 20)
    SharedObject.create(ours, 1).close()
    code = main(["rm", foreign, ours])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        f"left {path} in place" in err
        and "not a shared_object segment" in err
        and f"rm {path}" in err
    )
    assert os.path.exists(path)
    assert not os.path.exists(_segment.segment_path(ours))  # the rest of the list still goes


def test_gc_removes_only_what_no_live_handle_holds(
    spawn: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared_object.testing import unique_name

    prefix = unique_name("gc")
    live, stale = f"{prefix}-live", f"{prefix}-stale"
    with SharedObject.create(live, 1):
        child = spawn(helpers.create_and_exit, stale)  # creates, never unlinks, exits
        child.join(PROCESS_DEADLINE)
        # a half-created file left by a creator that died before publishing
        leftover = os.path.join(_segment.SHM_DIR, f"{_segment.TEMP_PREFIX}{prefix}-x-1-dead")
        open(leftover, "wb").close()
        code, out = run(capsys, "gc", "--dry-run", "--json", "--prefix", prefix)
        would = {r["name"] for r in json.loads(out)["would_remove"]}
        assert stale in would and os.path.basename(leftover) in would and live not in would
        assert os.path.exists(os.path.join(_segment.SHM_DIR, stale))  # dry run removed nothing
        code, out = run(capsys, "gc", "--prefix", prefix)
        assert code == 0 and f"removed {stale}" in out
        assert not os.path.exists(os.path.join(_segment.SHM_DIR, stale))
        assert not os.path.exists(leftover)
        assert SharedObject.attach(live).fetch() == 1  # the held one stays
    SharedObject.attach(live).unlink()


def test_attach_after_gc_never_gets_a_removed_segment(shm_name: str) -> None:
    SharedObject.create(shm_name, 1).close()
    assert main(["gc", "--prefix", shm_name]) == 0
    with pytest.raises(FileNotFoundError):
        SharedObject.attach(shm_name)


def test_doctor_reports_environment(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "doctor", "--json")
    findings = {f["check"]: f for f in json.loads(out)}
    assert code == 0
    assert {
        "shm directory",
        "shm size",
        "ipc namespace",
        "permissions",
        "stale segments",
        "platform",
        "versions",
    } <= set(findings)
    assert "ipc:[" in findings["ipc namespace"]["detail"]
    assert "numpy" in findings["versions"]["detail"]
    granted = "backed by 2 MiB pages" in findings["huge pages"]["detail"]
    assert granted == _segment.huge_pages_available(), findings["huge pages"]


def test_doctor_fails_when_shm_is_missing(tmp_path: Any) -> None:
    import subprocess
    import sys

    env = {**os.environ, "SHARED_OBJECT_DIR": str(tmp_path / "nowhere")}
    result = subprocess.run(
        [sys.executable, "-m", "shared_object", "doctor"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "[error] shm directory" in result.stdout


def test_doctor_warns_about_a_small_shm(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared_object.cli import doctor as _cmd_doctor

    monkeypatch.setattr(_cmd_doctor, "SMALL_SHM_BYTES", 10**15)  # any real /dev/shm is "small" now
    code, out = run(capsys, "doctor")
    assert code == 0 and "[warn ] shm size" in out and "shm_size" in out


def test_doctor_says_whether_a_dead_writer_s_lock_is_released(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under qemu-user (an arm64 image on an x86 host) a dead holder's lock stays taken for good."""
    from shared_object import _sync
    from shared_object.cli import doctor as _cmd_doctor

    findings = {f["check"]: f for f in json.loads(run(capsys, "doctor", "--json")[1])}
    native = _sync.robust_locks_supported() is not False  # CI's kernel: the kill tests rely on it
    assert (findings["robust locks"]["level"] == "ok") == native, findings["robust locks"]
    monkeypatch.setattr(
        _cmd_doctor, "robust_locks_supported", lambda: False
    )  # what qemu-user's ENOSYS gives
    code, out = run(capsys, "doctor")
    assert code == 0 and "[warn ] robust locks" in out and "qemu-user" in out


def test_health(shm_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "health", shm_name)[0] == 1
    with SharedObject.create(shm_name, 1):
        code, out = run(capsys, "health", shm_name, "--max-age", "60")
        assert code == 0 and "healthy" in out
        code, out = run(capsys, "health", shm_name, "--max-age", "0")
        assert code == 1 and "last changed" in out
        code, out = run(capsys, "health", shm_name, "--max-age", "inf")
        assert code == 0 and "healthy" in out


@pytest.mark.parametrize("max_age", ["nan", "-1", "soon"])
def test_health_refuses_a_max_age_that_would_pass_or_fail_everything(
    shm_name: str, capsys: pytest.CaptureFixture[str], max_age: str
) -> None:
    with SharedObject.create(shm_name, 1), pytest.raises(SystemExit) as exit_:
        run(
            capsys, "health", shm_name, f"--max-age={max_age}"
        )  # nan used to pass, whatever the age
    assert exit_.value.code == 2
    assert "expected a number of seconds >= 0" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "shared_object", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    for command in ("ls", "inspect", "rm", "gc", "doctor", "health"):
        assert command in result.stdout


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    """`shared-object ls | head -1`: the reader leaves early; that used to print a BrokenPipeError traceback."""
    import subprocess
    import sys

    cli = subprocess.Popen(
        [sys.executable, "-m", "shared_object", "ls"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert cli.stdout is not None and cli.stderr is not None
    cli.stdout.close()  # before the CLI has even imported: its first write meets a closed pipe
    stderr = cli.stderr.read().decode()
    assert cli.wait(timeout=60) == 1
    assert stderr == ""


def test_the_image_s_healthcheck_runs_the_public_command() -> None:
    """docker/Dockerfile probes with `shared-object health`, the command bench_health measures."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docker" / "Dockerfile"
    if not path.exists():  # inside the image, which ships the tests but not docker/
        pytest.skip(f"{path} is not here: nothing to check")
    dockerfile = path.read_text()
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK") :]
    assert 'exec shared-object health \\"$SHARED_OBJECT_HEALTH\\" --max-age 3' in healthcheck
    assert "_probe" not in healthcheck


@pytest.mark.parametrize(
    ("command", "module", "extra"),
    [
        (["view", "x"], "rerun", "view"),
        (["bridge", "--import", "x"], "zenoh", "zenoh"),
        (["play", "run.mcap"], "mcap", "mcap"),
    ],
    ids=["view", "bridge", "play"],
)
def test_a_command_whose_extra_is_missing_says_which_to_install(
    command: list[str], module: str, extra: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError now
    assert main(command) == 2  # usage: the command cannot run as it is installed
    err = capsys.readouterr().err
    assert f"needs the {extra} extra: pip install 'shared_object[{extra}]'" in err, err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# The command line's own behaviour: several values, the health probe's cost, versions, exit codes
# ---------------------------------------------------------------------------------------------
def test_every_option_that_takes_several_values_adds_them_up() -> None:
    """An option with several values that replaced its earlier use (argparse's default) would
    drop what a user gave first: `--import a --import b` mirrored only b."""
    import argparse

    from shared_object.cli import COMMANDS, command_parser

    several = []
    for command in COMMANDS:
        for action in command_parser(command)._actions:
            if action.option_strings and action.nargs in ("+", "*"):
                several.append(f"{command} {action.option_strings[-1]}")
                assert isinstance(action, argparse._ExtendAction), (
                    f"{command} {action.option_strings}"
                )
    assert len(several) >= 9, several  # bridge's six, gc --prefix, play --rename, view --as


@pytest.mark.parametrize(
    ("argv", "field", "expected"),
    [
        (["bridge", "--export", "a", "b", "--export", "c"], "export", ["a", "b", "c"]),
        (["bridge", "--import", "a=x", "--import", "b=y", "c"], "imports", ["a=x", "b=y", "c"]),
        (
            ["bridge", "--connect", "tcp/h:1", "--connect", "tcp/h:2"],
            "connect",
            ["tcp/h:1", "tcp/h:2"],
        ),
        (
            ["bridge", "--listen", "tcp/0.0.0.0:1", "--listen", "tls/0.0.0.0:2"],
            "listen",
            ["tcp/0.0.0.0:1", "tls/0.0.0.0:2"],
        ),
        (
            ["bridge", "--encode", "a=png", "b=jpeg", "--encode", "c=lz4"],
            "encode",
            ["a=png", "b=jpeg", "c=lz4"],
        ),
        (["bridge", "--max-rate", "a=1", "--max-rate", "b=2"], "max_rate", ["a=1", "b=2"]),
        (
            ["record", "a", "-o", "run.mcap", "b", "--duration", "1", "c"],
            "patterns",
            ["a", "b", "c"],
        ),
        (
            ["play", "f.mcap", "--rename", "a=b", "--rename", "c=d", "e=f"],
            "rename",
            ["a=b", "c=d", "e=f"],
        ),
        (
            ["view", "a", "--max-rate", "5", "b", "--as", "a=image", "--as", "b=scalar"],
            "patterns",
            ["a", "b"],
        ),
        (
            ["view", "a", "--as", "a=image", "b=tensor", "--as", "c=scalar"],
            "forced",
            ["a=image", "b=tensor", "c=scalar"],
        ),
        (["top", "a", "--interval", "2", "b"], "patterns", ["a", "b"]),
        (["gc", "--prefix", "a", "b", "--prefix", "c"], "prefix", ["a", "b", "c"]),
        (["rm", "a", "b"], "names", ["a", "b"]),
    ],
    ids=[
        "bridge export",
        "bridge import",
        "bridge connect",
        "bridge listen",
        "bridge encode",
        "bridge max-rate",
        "record",
        "play",
        "view",
        "view as",
        "top",
        "gc",
        "rm",
    ],
)
def test_several_values_come_both_ways_and_add_up(
    argv: list[str], field: str, expected: list[str]
) -> None:
    from shared_object.cli import parse

    args = parse(argv)
    assert args.command == argv[0]
    assert getattr(args, field) == expected


def test_gc_takes_several_prefixes(shm_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    for suffix in ("-a", "-b", "-c"):
        SharedObject.create(shm_name + suffix, 1).close()  # closed: no handle holds it
    code, out = run(
        capsys, "gc", "--prefix", shm_name + "-a", "--prefix", shm_name + "-b", "--json"
    )
    assert code == 0
    assert sorted(r["name"] for r in json.loads(out)["removed"]) == [
        shm_name + "-a",
        shm_name + "-b",
    ]
    assert os.path.exists(os.path.join(_segment.SHM_DIR, shm_name + "-c"))


def test_the_health_probe_loads_neither_argparse_nor_numpy(shm_name: str) -> None:
    """The healthcheck's path: `shared-object health NAME --max-age S` reads its arguments by hand."""
    import subprocess

    code = (
        "import sys; from shared_object.cli import main; code = main(sys.argv[1:]); "
        "print(sorted(m for m in ('argparse', 'numpy', 'zenoh') if m in sys.modules)); sys.exit(code)"
    )
    with SharedObject.create(shm_name, np.zeros(3)) as obj:
        for args in ([shm_name], [shm_name, "--max-age", "inf"], [shm_name, "--max-age=60"]):
            result = subprocess.run(
                [sys.executable, "-c", code, "health", *args],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines() == [result.stdout.splitlines()[0], "[]"], (
                result.stdout
            )
            assert "healthy" in result.stdout
        obj.unlink()
    missing = subprocess.run(
        [sys.executable, "-c", code, "health", shm_name], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1 and "unhealthy" in missing.stdout


def test_health_falls_back_to_argparse_for_anything_else(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as help_:
        main(["health", "--help"])
    assert help_.value.code == 0 and "--max-age" in capsys.readouterr().out
    for argv in (["health"], ["health", "a", "b"], ["health", "a", "--max-age", "soon"]):
        with pytest.raises(SystemExit) as refused:
            main(argv)
        assert refused.value.code == 2, argv


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import shared_object

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"shared-object {shared_object.__version__}"


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["no-such-command"], 2),
        (["ls", "--no-such-option"], 2),
        (["top", "--interval", "0"], 2),
        (["bridge", "--export", "x", "--encode", "x=webp"], 2),
        (["record", "x"], 2),  # -o is required
        (["inspect", "so-test-no-such-object-here"], 1),
        (["health", "so-test-no-such-object-here"], 1),
        (["rm", "so-test-no-such-object-here"], 1),
        (["play", "/nonexistent/run.mcap"], 1),
    ],
)
def test_exit_codes_are_0_fine_1_failed_2_usage(argv: list[str], code: int) -> None:
    try:
        got = main(argv)
    except SystemExit as exit_:  # argparse's way of saying "usage"
        got = exit_.code
    assert got == code, argv
