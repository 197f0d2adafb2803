"""A re-signed manifest naming a file for timm to read, through a real process: refused on load with exactly one
line on stderr (no warning from torch or timm before it), the named file never opened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from corpus import Ctx, forged_kwargs


def test_checkpoint_path_in_a_manifest_is_one_line_and_never_read(pipe, tmp_path: Path) -> None:
    path = forged_kwargs(Ctx(tmp_path, pipe), checkpoint_path=str(tmp_path / "evil.pt"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "always"}
    proc = subprocess.run([sys.executable, "-m", "enofctl", "eval", str(path), "--limit", "8"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("enofctl: error: "), proc.stderr
    assert "model.kwargs.checkpoint_path" in proc.stderr
    assert not (tmp_path / "evil.pt").exists() and proc.stdout == ""
