"""`enofctl teacher fetch` (offline: local checkpoints and the errors without one) and continuing an
interrupted training run with --resume."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
import torch
from clihelp import TINY, assert_one_error_line, listing, manifest, ok, run

from enofctl import artifacts

# ----------------------------------------------------------------------------------------------------------
# teacher fetch


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:  # the hub reads the variable when it is imported, which may already have happened
        import huggingface_hub.constants as hub_constants
    except ImportError:
        return
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


def test_fetch_offline_without_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    out = tmp_path / "x.safetensors"
    assert_one_error_line(*run("teacher", "fetch", "resnet18", "--dataset", "cifar10", "--out", out), 1,
                          "--checkpoint")
    assert listing(tmp_path) == set()


def test_fetch_without_a_network_is_one_line_within_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network (every connection refused) and HF_HUB_OFFLINE not set: the hub is not retried for a minute;
    one whole line, and the process's offline setting is as it was afterwards."""
    import socket
    import time

    def refused(*_a, **_kw):
        raise OSError(101, "Network is unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.setattr(socket.socket, "connect", refused)
    t0 = time.monotonic()
    line = assert_one_error_line(*run("teacher", "fetch", "resnet18", "--dataset", "synthetic", "--out",
                                      tmp_path / "x.safetensors"), 1, "cannot download", "--checkpoint PATH")
    assert time.monotonic() - t0 < 20, "retried the hub"
    assert line.endswith("(.safetensors or a timm/torch checkpoint)")
    assert "HF_HUB_OFFLINE" not in os.environ and listing(tmp_path) == set()


def test_first_sentence_never_cuts_one() -> None:
    from enofctl.errors import first_sentence

    long = "The file is not in the local cache. " + "x" * 300
    assert first_sentence(ValueError(long)) == "The file is not in the local cache."
    words = "word " * 100
    assert first_sentence(ValueError(words)).endswith("word…") and len(first_sentence(ValueError(words))) <= 201


def test_fetch_bad_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    junk = tmp_path / "weights.pth"
    junk.write_bytes(b"not a checkpoint at all")
    out = tmp_path / "x.safetensors"
    assert_one_error_line(*run("teacher", "fetch", "resnet18", "--checkpoint", junk, "--dataset", "synthetic",
                               "--out", out), 1, "cannot load weights")
    assert listing(tmp_path) == {"weights.pth"}


def test_fetch_from_local_checkpoint_reheads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    from safetensors.torch import save_file

    _offline(monkeypatch)
    src = timm.create_model("resnet18", num_classes=1000)
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(weights))
    out = tmp_path / "t.safetensors"
    code, stdout, err = run("teacher", "fetch", "resnet18", "--checkpoint", weights, "--dataset", "synthetic",
                            "--out", out, "--quiet")
    assert code == 0, err
    assert stdout == f"{out}\n"

    art = artifacts.load(out, expect="teacher")
    m = art.manifest
    assert (m.kind, m.stage, m.model.name, m.model.num_classes) == ("teacher", "teacher-fetch", "resnet18", 4)
    assert art.tensors["fc.weight"].shape == (4, 512)  # re-headed to the 4 synthetic classes
    # the backbone weights are the checkpoint's, not a fresh initialisation
    ref = src.state_dict()
    for k in ("conv1.weight", "layer4.1.conv2.weight", "bn1.running_var"):
        assert torch.equal(art.tensors[k], ref[k]), k
    assert 0.0 <= m.metrics.top1 <= 1.0  # evaluated on synthetic, whose 16x16 images resnet18 still takes
    assert listing(tmp_path) == {"weights.safetensors", "t.safetensors"}
    # and it works as a teacher downstream
    r = json.loads(ok("eval", out, "--json", "--limit", "16"))
    assert r["kind"] == "teacher" and r["model"] == "resnet18"



# ----------------------------------------------------------------------------------------------------------
# --resume


def _stop_after_first_epoch(ev) -> None:
    if ev.metrics and ev.metrics.get("epoch") == 1:  # sent after epoch 1's checkpoint is written
        raise KeyboardInterrupt


RESUME_ARGS = ("--dataset", "synthetic", "--width", "0.125", "--epochs", "2", "--limit-train", "128",
               "--seed", "3", "--device", "cpu")


def test_resume_after_interrupt_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    from enofctl.stages import TeacherConfig, train_teacher

    # what `teacher train RESUME_ARGS` builds
    cfg = TeacherConfig(dataset="synthetic", model_kwargs={"width": 0.125}, epochs=2, limit_train=128, seed=3,
                        device="cpu")
    a_dir, b_dir = tmp_path / "interrupted", tmp_path / "straight"
    a_dir.mkdir()
    b_dir.mkdir()
    a, b = a_dir / "t.safetensors", b_dir / "t.safetensors"

    with pytest.raises(KeyboardInterrupt):
        train_teacher(cfg, a, progress=_stop_after_first_epoch)
    assert not a.exists()
    assert listing(a_dir) == {"t.safetensors.ckpt"}  # the checkpoint of epoch 1, and nothing half-written

    epochs_seen = []

    def log_epochs(ev) -> None:
        if ev.metrics:
            epochs_seen.append(ev.metrics["epoch"])

    train_teacher(cfg, a, resume=True, progress=log_epochs)
    assert epochs_seen == [2]  # only the missing epoch was trained
    assert listing(a_dir) == {"t.safetensors"}  # checkpoint removed at the end

    train_teacher(cfg, b)

    ta, tb = artifacts.load(a), artifacts.load(b)
    assert [h["epoch"] for h in ta.manifest.history] == [0, 1, 2]
    assert ta.manifest.history[0]["test_top1"] == tb.manifest.history[0]["test_top1"]
    assert set(ta.tensors) == set(tb.tensors)
    for k in ta.tensors:
        torch.testing.assert_close(ta.tensors[k], tb.tensors[k], rtol=1e-5, atol=1e-6, msg=k)
    for ha, hb in zip(ta.manifest.history[1:], tb.manifest.history[1:], strict=True):
        assert ha["loss"] == pytest.approx(hb["loss"], rel=1e-5)
        assert ha["test_top1"] == hb["test_top1"]
    assert ta.manifest.metrics.top1 == tb.manifest.metrics.top1


def test_cli_interrupt_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in `teacher train` exits 130 with the checkpoint kept; `--resume` finishes the run."""
    import enofctl.cli.teacher as teacher_cli

    @contextlib.contextmanager
    def interrupting_progress(quiet: bool, what: str):
        yield _stop_after_first_epoch

    out = tmp_path / "t.safetensors"
    with monkeypatch.context() as m:
        m.setattr(teacher_cli, "progress", interrupting_progress)
        code, stdout, err = run("teacher", "train", *RESUME_ARGS, "--out", out)
    assert code == 130
    assert stdout == ""
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line] == [
        "enofctl: interrupted (checkpoint t.safetensors.ckpt kept; continue with --resume)"], err
    assert listing(tmp_path) == {"t.safetensors.ckpt"}

    code, stdout, err = run("teacher", "train", *RESUME_ARGS, "--resume", "--out", out)
    assert code == 0, err
    assert stdout == f"{out}\n"
    assert "epoch 1/2" not in err and "epoch 2/2" in err  # epoch 1 came from the checkpoint
    assert listing(tmp_path) == {"t.safetensors"}
    assert [h["epoch"] for h in manifest(out).history] == [0, 1, 2]


def test_non_finite_loss_is_a_runtime_error(tmp_path: Path) -> None:
    out = tmp_path / "t.safetensors"
    assert_one_error_line(*run("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "128",
                               "--lr", "1e30", "--quiet", "--out", out), 1, "non-finite loss")  # (without --quiet:
    # the epoch-0 line before it)
    assert listing(tmp_path) == set()


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    out = tmp_path / "t.safetensors"
    code, stdout, err = run("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "64", "--resume",
                            "--quiet", "--out", out)
    assert code == 0 and stdout == f"{out}\n"
    assert err == f"enofctl: warning: --resume: no checkpoint {out}.ckpt to continue from; starting from the first " \
        "epoch\n"  # said, not silent
    assert [h["epoch"] for h in manifest(out).history] == [0, 1]


