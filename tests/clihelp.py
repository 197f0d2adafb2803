"""Running the `enofctl` command line in-process, what every failure must look like, and the small pipeline
the CLI tests share (built once per test session)."""

from __future__ import annotations

import contextlib
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest

import enofctl.cli
from enofctl import artifacts

TINY = ("--width", "0.125", "--epochs", "1")  # a teacher that trains in a couple of seconds
QUICK = ("--epochs", "1", "--limit-train", "64")  # a distillation that does too


def run(*args: object) -> tuple[int, str, str]:
    """Run ``enofctl ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code: object = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            enofctl.cli.main([str(a) for a in args])
        except SystemExit as e:
            code = e.code
    if code is None:
        code = 0
    assert isinstance(code, int), f"exit code {code!r} is not an int"
    return code, out.getvalue(), err.getvalue()


def ok(*args: object) -> str:
    """Run a command that must succeed; its stdout."""
    code, out, err = run(*args)
    assert code == 0, f"enofctl {' '.join(map(str, args))} failed ({code}): {err}"
    assert "Traceback" not in err
    return out


def assert_one_error_line(code: int, out: str, err: str, expect_code: int, *needles: str) -> str:
    """A failure as the CLI promises: the exit code, one ``enofctl: error:`` line, nothing on stdout."""
    assert code == expect_code, f"exit code {code}, expected {expect_code}; stderr: {err}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("enofctl: error: "), lines[0]
    assert out == "", f"unexpected stdout: {out!r}"
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def manifest(path: Path) -> artifacts.Manifest:
    return artifacts.load(path).manifest


@dataclass
class Pipeline:
    dir: Path
    teacher: Path
    student0: Path  # converted, T=2
    student: Path  # distilled from student0
    student2: Path  # distilled straight from the teacher with --T 2
    stdout: dict[str, str]
    stderr: dict[str, str]


_pipeline: Pipeline | None = None
_dir: Path | None = None
_outputs: tuple[dict[str, str], dict[str, str]] = ({}, {})  # stdout, stderr of each step run so far


def _step(name: str, *args: object) -> None:
    """Run one pipeline step (once per session) and keep what it printed."""
    stdout, stderr = _outputs
    if name not in stdout:
        code, stdout[name], stderr[name] = run(*args)
        if code != 0:
            pytest.fail(f"pipeline step {name} failed ({code}): {stderr[name]}")


def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline's first step alone (teacher train on `synthetic`, `TINY`), run once per session and shared by
    every test that needs some small trained teacher; tests only read it."""
    global _dir
    if _dir is None:
        _dir = tmp_path_factory.mktemp("pipeline")
    t = _dir / "t.safetensors"
    _step("teacher", "teacher", "train", "--dataset", "synthetic", *TINY, "--out", t)
    return t


def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """teacher train -> convert -> distill (twice) on `synthetic`, run once per session; tests only read it."""
    global _pipeline
    if _pipeline is None:
        t = tiny_teacher(tmp_path_factory)
        d = t.parent
        s0, s, s2 = (d / n for n in ("s0.safetensors", "s.safetensors", "s2.safetensors"))
        # the logs' lines are asserted exactly: no time-based progress line, however loaded the machine
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ENOFCTL_PROGRESS_SECONDS", "3600")
            _step("convert", "convert", t, "--T", "2", "--out", s0)
            _step("distill", "distill", "--teacher", t, "--student", s0, "--out", s, *QUICK)
            _step("distill2", "distill", "--teacher", t, "--T", "2", "--out", s2, *QUICK)
        _pipeline = Pipeline(d, t, s0, s, s2, *_outputs)
    return _pipeline
