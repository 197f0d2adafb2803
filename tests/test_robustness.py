"""Scale-out, interruption, untrusted files and CI gates: torchrun with 2 CPU processes, a real SIGKILL and
--resume, mutated artifacts through the CLI, and the eval gates' exit code 3."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from clihelp import assert_one_error_line, ok, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from enofctl.stages import EvalConfig, evaluate

TEACHER = ("teacher", "train", "--dataset", "synthetic", "--width", "0.125", "--epochs", "2", "--quiet")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    return env


def _free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it for a socket bound to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("robust") / "t.safetensors"
    ok(*TEACHER, "--out", path)
    return path


def test_torchrun_distill_two_cpu_processes(teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "enofctl", "distill", "--teacher", str(teacher), "--T", "2", "--epochs", "1",
           "--limit-train", "128", "--batch-size", "32", "--reconstruct", "0", "--out", str(out), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"only rank 0 prints: {proc.stdout!r}"
    printed = json.loads(lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.safetensors"]  # no checkpoint, no temp file
    single = evaluate(out, EvalConfig(device="cpu", speed_batches=0))  # where the ranks ran, also on a GPU machine
    assert printed["metrics"]["top1"] == pytest.approx(single.top1)
    assert printed["metrics"]["spikes_per_sample"] == pytest.approx(single.spikes_per_sample)
    history = json.loads(ok("inspect", out, "--json"))["manifest"]["history"]
    # per-epoch accuracy is computed on per-rank shards (other batch shapes, so other float rounding, and a
    # spike flips when a membrane sits at the threshold): equal up to a sample or two
    assert [row["epoch"] for row in history] == [0, 1]  # row 0: the untrained student, also on the shards
    assert history[-1]["test_top1"] == pytest.approx(single.top1, abs=2.5 / single.samples)


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    args = ["teacher", "train", "--dataset", "digits", "--width", "0.25", "--epochs", "5", "--quiet",
            "--seed", "3"]
    killed, ref = tmp_path / "killed.safetensors", tmp_path / "ref.safetensors"
    ckpt = killed.with_name(killed.name + ".ckpt")
    proc = subprocess.Popen([sys.executable, "-m", "enofctl", *args, "--out", str(killed)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert ckpt.exists() and not killed.exists(), "the run must die mid-training, after its first checkpoint"
    ok(*args, "--resume", "--out", killed)
    assert not ckpt.exists()
    subprocess.run([sys.executable, "-m", "enofctl", *args, "--out", str(ref)], env=_env(), check=True)
    a, b = load_file(str(killed)), load_file(str(ref))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma = json.loads(ok("inspect", killed, "--json"))["manifest"]["metrics"]
    mb = json.loads(ok("inspect", ref, "--json"))["manifest"]["metrics"]
    assert ma == mb


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cli_survives_mutated_artifacts(teacher: Path, tmp_path: Path, data) -> None:
    raw = bytearray(teacher.read_bytes())
    how = data.draw(st.sampled_from(["flip", "truncate", "header", "garbage"]))
    if how == "flip":
        for pos in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            raw[pos] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "header":
        header_len = int.from_bytes(raw[:8], "little")
        pos = data.draw(st.integers(8, 8 + header_len - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    else:
        raw = bytearray(data.draw(st.binary(min_size=0, max_size=200)))
    path = tmp_path / "mutated.safetensors"
    path.write_bytes(bytes(raw))
    for command in (["inspect", path], ["eval", path, "--limit", "8", "--speed-batches", "0", "--json"]):
        code, out, err = run(*command)
        assert "Traceback" not in err
        if code != 0:
            assert_one_error_line(code, out, err, code)
            assert code in (1, 2)


def _no_stdout(result: tuple[int, str, str]) -> tuple[int, str, str]:
    code, out, err = result
    assert "Accuracy and activity" in out
    return code, "", err


def test_gates_fail_with_exit_3(teacher: Path, tmp_path: Path) -> None:
    student = tmp_path / "s.safetensors"
    ok("convert", teacher, "--T", "2", "--no-calibrate", "--out", student)  # top-1 below 1: the gate can fail
    base = ("eval", student, "--limit", "32", "--speed-batches", "0")
    ok(*base, "--min-top1", "0", "--max-energy-ratio", "10")
    # the tables still go to stdout (the pipeline's log); stderr has the one-line reason
    assert_one_error_line(*_no_stdout(run(*base, "--min-top1", "1.0")), 3, "gate failed", "top-1")
    assert_one_error_line(*_no_stdout(run(*base, "--max-spikes-per-sample", "1")), 3, "gate failed",
                          "spikes/sample")
    assert_one_error_line(*_no_stdout(run(*base, "--max-energy-ratio", "0.0001")), 3, "gate failed",
                          "energy ratio")
    code, out, err = run(*base, "--min-top1", "1.0", "--json")
    assert code == 3 and json.loads(out)["gates_failed"]  # the JSON is still printed for the pipeline's log
    # spike and energy gates do not apply to an ANN
    ok("eval", teacher, "--limit", "32", "--speed-batches", "0", "--max-spikes-per-sample", "0")


@pytest.mark.slow
def test_ci_example_script_runs(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    env = _env()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(EPOCHS="1", DATASET="synthetic", WIDTH="0.125", MIN_TOP1="0.0")
    proc = subprocess.run(["bash", str(root / "examples" / "ci_pipeline.sh"), str(tmp_path / "ci")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "ci" / "eval.json").exists()
    made = {p: p.stat().st_mtime_ns for p in (tmp_path / "ci").glob("*.safetensors")}
    env.update(MAX_SPIKES="1", REUSE="1")  # an impossible gate stops the pipeline with exit 3; the stages cached
    proc = subprocess.run(["bash", str(root / "examples" / "ci_pipeline.sh"), str(tmp_path / "ci")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "gate failed" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in made} == made and len(made) == 2  # reused, not retrained
