"""The one atomic write: the target is the old file or the new one, and no temporary file is ever left."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from enofctl.errors import Interrupted, WriteError
from enofctl.io import atomic_write, json_depth, loads_bounded


def test_writes_through_a_temporary_file_beside_the_target(tmp_path: Path) -> None:
    out, seen = tmp_path / "a.bin", []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.parent == out.parent and tmp != out and not out.exists()
        tmp.write_bytes(b"new")

    assert atomic_write(out, write) == out
    assert out.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    assert not seen[0].exists()


@pytest.mark.parametrize("exc, raised", [(RuntimeError("disk full"), WriteError),
                                         (KeyboardInterrupt(), KeyboardInterrupt),
                                         (Interrupted(signal.SIGTERM), Interrupted)])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, exc: BaseException, raised) -> None:
    out = tmp_path / "a.bin"
    out.write_bytes(b"old")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise exc

    with pytest.raises(raised):
        atomic_write(out, write)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


@pytest.mark.parametrize("text, depth", [('{"a": [1, {"b": "[[[\\"]]"}]}', 3), ('"\\\\"', 0),
                                         ('{"a\\\\": {"b": 1}}', 2), ('"unterminated \\', 0), ("[" * 100, 100)])
def test_json_depth_counts_brackets_outside_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth


@pytest.mark.parametrize("text, needle", [("[" * 65 + "]" * 65, "nested deeper"), ("[" + "9" * 41 + "]", "digits"),
                                          ('{"a": ', "Expecting value")])
def test_untrusted_json_is_refused_before_parsing(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        loads_bounded(text)
    assert loads_bounded("[" * 64 + "]" * 64) is not None


def test_json_depth_is_linear_on_hostile_strings() -> None:
    """Escaped quotes without an end: a backtracking scan would take hours on this."""
    assert json_depth('"' + '\\"' * 200_000 + "\\") == 0
