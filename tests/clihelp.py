"""Running the `enofctl` command line in-process, and what every failure must look like."""

from __future__ import annotations

import contextlib
import io

import enofctl.cli


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
