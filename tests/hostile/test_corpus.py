"""Every case of the hostile corpus through the real CLI: its exit code, one error line with its words, no
traceback, nothing on stdout, nothing written, and every file that was there before unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from clihelp import assert_one_error_line, run
from corpus import CASES, Case, Ctx


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: a regular file's sha256, or what kind of entry it is."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            out[str(p)] = "special"
        elif p.is_dir():
            out[str(p)] = "dir"
        else:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case(case: Case, pipe, tmp_path: Path) -> None:
    ctx = Ctx(tmp_path, pipe)
    args = case.make(ctx)
    before, before_pipe = _snapshot(tmp_path), _snapshot(pipe.dir)
    assert_one_error_line(*run(*args), case.code, *case.needles)
    assert _snapshot(tmp_path) == before, "the command wrote or changed a file"
    assert _snapshot(pipe.dir) == before_pipe
