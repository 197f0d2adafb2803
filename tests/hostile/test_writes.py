"""Writes that fail: a full disk during convert's save, a training checkpoint or eval's report, a read-only
folder or file system. Each is one line and exit 1, no temporary file is left, and nothing half-written; a
temporary file a killed writer left is removed by the next write."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clihelp import TINY, assert_one_error_line, listing, run

from enofctl.errors import WriteError
from enofctl.io import atomic_write, remove_stale_temps

TRAIN = ("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "64", "--device", "cpu", "--quiet")


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_during_convert_save(pipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    def half_then_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half an artifact")
        raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")  # safetensors' way

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_full)
    out = tmp_path / "s.safetensors"
    assert_one_error_line(*run("convert", pipe.teacher, "--no-calibrate", "--out", out), 1, "cannot write",
                          str(out))
    assert listing(tmp_path) == set()


def test_full_disk_during_a_training_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_then_full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        _enospc()

    monkeypatch.setattr(torch, "save", half_then_full)
    out = tmp_path / "t.safetensors"
    assert_one_error_line(*run(*TRAIN, "--out", out), 1, "cannot write", "No space left on device")
    assert listing(tmp_path) == set()


def test_full_disk_during_the_report_leaves_no_half_plot(pipe, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    report = tmp_path / "report"
    monkeypatch.setattr(os, "fsync", _enospc)  # the disk fills up as the first file is flushed
    assert_one_error_line(*run("eval", pipe.teacher, "--limit", "8", "--speed-batches", "0", "--quiet",
                               "--report", report), 1, "No space left on device")
    assert not [p for p in report.rglob("*") if p.name.endswith(".tmp")]
    assert not list(report.glob("*.png"))


def test_read_only_file_system_at_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def erofs(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))

    monkeypatch.setattr(os, "replace", erofs)
    with pytest.raises(WriteError, match="Read-only file system"):
        atomic_write(tmp_path / "a.bin", lambda tmp: tmp.write_bytes(b"x"))
    assert listing(tmp_path) == set()


def test_target_turned_directory_is_eisdir(tmp_path: Path) -> None:
    (tmp_path / "a.bin").mkdir()
    with pytest.raises(WriteError, match="directory"):
        atomic_write(tmp_path / "a.bin", lambda tmp: tmp.write_bytes(b"x"))
    assert listing(tmp_path) == {"a.bin"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(pipe, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert_one_error_line(*run("convert", pipe.teacher, "--no-calibrate", "--out", folder / "s.safetensors"),
                              1, "cannot write into", "permission denied")
        assert listing(folder) == set()
    finally:
        folder.chmod(0o755)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_of_killed_writers_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "t.safetensors"
    dead = _dead_pid()
    stale = [tmp_path / f".t.safetensors.{dead}.tmp", tmp_path / f".t.safetensors.ckpt.{dead}.tmp"]
    live = tmp_path / f".t.safetensors.{os.getppid()}.tmp"  # a running process's: not ours to remove
    for p in (*stale, live):
        p.write_bytes(b"left by SIGKILL")
    assert remove_stale_temps(tmp_path / "x.bin") == []  # another target's temp files are not touched
    code, _, err = run(*TRAIN, "--out", out)
    assert code == 0, err
    assert listing(tmp_path) == {"t.safetensors", live.name}


REPORT = ("--limit", "8", "--speed-batches", "0", "--quiet", "--report")


def _writes_one_then(exc: BaseException):
    """report's file writer: the first file is written, the second fails with ``exc``."""
    import enofctl.report as report

    real, calls = report._write, {"n": 0}

    def write(path: Path, data) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            path.write_bytes(b"half")
            raise exc
        real(path, data)

    return write


@pytest.mark.parametrize("exc, code", [(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), 1),
                                       (KeyboardInterrupt(), 130)], ids=["full-disk", "interrupt"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "over-an-earlier-report"])
def test_a_report_is_written_whole_or_not_at_all(pipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 exc: BaseException, code: int, existing: bool) -> None:
    import enofctl.report as report

    folder = tmp_path / "report"
    if existing:
        assert run("eval", pipe.teacher, *REPORT, folder)[0] == 0
    before = {p: p.read_bytes() for p in folder.rglob("*")} if existing else {}
    monkeypatch.setattr(report, "_write", _writes_one_then(exc))
    got, out, err = run("eval", pipe.teacher, *REPORT, folder)
    assert got == code and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert listing(tmp_path) == ({"report", *(str(p.relative_to(tmp_path)) for p in before)} if existing else set())
    assert {p: p.read_bytes() for p in folder.rglob("*")} == before


def test_an_earlier_report_is_replaced_and_a_folder_of_other_files_refused(pipe, tmp_path: Path) -> None:
    folder = tmp_path / "report"
    for _ in range(2):
        assert run("eval", pipe.teacher, *REPORT, folder)[0] == 0
    assert {p.name for p in tmp_path.iterdir()} == {"report"} and (folder / "report.json").is_file()
    (folder / "notes.txt").write_text("mine")
    assert_one_error_line(*run("eval", pipe.teacher, *REPORT, folder), 2, "other files", "notes.txt")
    assert (folder / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_honour_the_umask(tmp_path: Path, umask: int) -> None:
    """A writer that creates its file 0600 (as a temporary file is): the result has 0666 & ~umask."""
    def private(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x")
        os.close(fd)

    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "a.bin", private)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
