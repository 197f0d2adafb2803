"""Interrupts at any moment: Ctrl-C or SIGTERM while the command is still importing torch, and SIGTERM in the
middle of training (the checkpoint is kept, no temporary file is left, --resume finishes the run). Each ends
with one line on stderr and exit 130 (Ctrl-C) or 143 (SIGTERM). Real processes, real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clihelp import listing

TRAIN = ("teacher", "train", "--dataset", "digits", "--width", "0.25", "--epochs", "3", "--limit-train", "512",
         "--quiet", "--seed", "1")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}


def _wait_until_handled(proc: subprocess.Popen, signum: int, timeout: float = 60.0) -> None:
    """Wait until the child has installed its handler for ``signum`` (the entry point does so first, before the
    heavy imports): Linux's /proc/PID/status lists the caught signals as a hex mask (SigCgt)."""
    status = Path(f"/proc/{proc.pid}/status")
    if not status.exists():
        pytest.skip("no /proc/PID/status here to see when the child's signal handlers are installed")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the child ended before it installed its signal handlers"
        caught = re.search(r"^SigCgt:\s*([0-9a-fA-F]+)$", status.read_text(), re.MULTILINE)
        if caught and int(caught.group(1), 16) >> (signum - 1) & 1:
            return
        time.sleep(0.002)
    pytest.fail(f"the child did not install a handler for signal {signum} within {timeout} s")


def _start(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "enofctl", *map(str, args)], env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_during_imports_is_one_line(tmp_path: Path, signum: int, code: int) -> None:
    proc = _start("inspect", tmp_path / "nothing.safetensors")
    # Python itself catches SIGINT from its start; enofctl's handlers are ready once SIGTERM (installed after
    # SIGINT, before torch and timm are imported, which takes seconds) is caught too
    _wait_until_handled(proc, signal.SIGTERM)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [err.strip()]
    assert err.startswith("enofctl: "), err
    assert out == ""


def test_sigterm_mid_training_keeps_the_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "t.safetensors"
    ckpt = tmp_path / "t.safetensors.ckpt"
    proc = _start(*TRAIN, "--out", out)
    deadline = time.monotonic() + 180
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        "enofctl: terminated by SIGTERM (checkpoint t.safetensors.ckpt kept; continue with --resume)"], err
    assert listing(tmp_path) == {"t.safetensors.ckpt"}  # no artifact, no temporary file
    done = subprocess.run([sys.executable, "-m", "enofctl", *TRAIN, "--resume", "--out", str(out)], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert listing(tmp_path) == {"t.safetensors"}
