"""--resume continues only the run its checkpoint belongs to: other options (or another input file) are refused
with one line naming them, --epochs may grow (recorded in the history), a changed byte is detected; and a
run whose weights turn non-finite stops with the last good checkpoint kept, nothing saved."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from clihelp import TINY, assert_one_error_line, listing, manifest, ok, run

from enofctl.data import load_dataset
from enofctl.errors import ArtifactError, TrainingError, UsageError
from enofctl.stages.common import TrainConfig
from enofctl.stages.context import RunContext
from enofctl.stages.loop import RunIO, Trainee, fit
from enofctl.stages.train_state import TrainState, resume_changes

ARGS = ("teacher", "train", "--dataset", "synthetic", "--width", "0.125", "--epochs", "2", "--limit-train", "128",
        "--seed", "3", "--device", "cpu", "--quiet")


def _stop_after_first_epoch(ev) -> None:
    if ev.metrics and ev.metrics.get("epoch") == 1:
        raise KeyboardInterrupt


@pytest.fixture
def interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `teacher train ARGS` run stopped after epoch 1: its --out (absent) beside its checkpoint."""
    import enofctl.cli.teacher as teacher_cli

    @contextlib.contextmanager
    def interrupting(quiet: bool, what: str):
        yield _stop_after_first_epoch

    out = tmp_path / "t.safetensors"
    with monkeypatch.context() as m:
        m.setattr(teacher_cli, "progress", interrupting)
        code, _, err = run(*ARGS, "--out", out)
    assert code == 130, err
    assert listing(tmp_path) == {"t.safetensors.ckpt"}
    return out


def test_resume_with_other_options_is_refused_naming_them(interrupted: Path) -> None:
    ckpt = interrupted.with_name("t.safetensors.ckpt")
    before = ckpt.read_bytes()
    line = assert_one_error_line(*run(*ARGS, "--resume", "--width", "0.25", "--lr", "0.1", "--optimizer", "adamw",
                                      "--out", interrupted), 2, "other options")
    for option in ("--width 0.125 (now 0.25)", "--lr 0.05 (now 0.1)", "--optimizer sgd (now adamw)"):
        assert option in line, line
    assert "--seed" not in line and "--epochs" not in line
    for other in (("--seed", "4"), ("--batch-size", "32"), ("--act", "clamp"), ("--dataset", "digits")):
        assert_one_error_line(*run(*ARGS, "--resume", *other, "--out", interrupted), 2, other[0])
    assert ckpt.read_bytes() == before and not interrupted.exists()


def test_resume_with_more_epochs_is_allowed_and_recorded(interrupted: Path) -> None:
    ok(*ARGS, "--resume", "--epochs", "3", "--out", interrupted)
    history = manifest(interrupted).history
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    assert history[2]["resumed_epochs_was"] == 2  # the first epoch after the resume says what changed
    assert "resumed_epochs_was" not in history[3]
    # and each epoch the schedule it ran under: epoch 1 under the 2-epoch cosine, the rest under the 3-epoch one
    assert [row.get("schedule_epochs") for row in history] == [None, 2, 3, 3]
    assert history[1]["lr"] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi / 2)), rel=1e-4)
    assert history[3]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_resume_with_fewer_epochs_than_done_is_refused() -> None:
    with pytest.raises(UsageError, match="--epochs 2: c.ckpt has already finished 3 epochs"):
        resume_changes(Path("c.ckpt"), {"epochs": 5, "lr": 0.1}, {"epochs": 2, "lr": 0.1}, done=3)
    assert resume_changes(Path("c.ckpt"), {"epochs": 5}, {"epochs": 8}, done=3) == {"epochs": 5}


def test_resume_refuses_a_changed_byte(interrupted: Path) -> None:
    ckpt = interrupted.with_name("t.safetensors.ckpt")
    raw = torch.load(ckpt, weights_only=True)
    name = next(iter(raw["model"]))
    raw["model"][name].view(-1)[0] += 1.0  # the digest is left as it was
    torch.save(raw, ckpt)
    assert_one_error_line(*run(*ARGS, "--resume", "--out", interrupted), 1, "does not match its digest")


def test_resume_refuses_another_init_file(tmp_path: Path) -> None:
    """The inputs' sha256 is part of the recorded options: --init naming other weights is refused."""
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    ok("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "64", "--out", a)
    ok("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "64", "--seed", "1", "--out", b)
    out = tmp_path / "t.safetensors"
    state = TrainState(torch.nn.Linear(1, 1), *_opt_sched(), torch.Generator())
    state.save(out.with_name("t.safetensors.ckpt"), "teacher-train", {"init": str(b), "input:init": "0" * 64})
    line = assert_one_error_line(*run("teacher", "train", "--dataset", "synthetic", "--epochs", "1", "--init", a,
                                      "--resume", "--out", out), 2, "other options")
    assert "--init" in line


def _opt_sched():
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def test_non_finite_weights_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path: Path) -> None:
    """The loss stays finite, but a BatchNorm statistic turns NaN in epoch 2: the run stops (TrainingError),
    epoch 1's checkpoint is the one kept."""
    from enofctl.models import build_model

    data = load_dataset("synthetic")
    model = build_model("resnet20", 4, 3, {"width": 0.125})
    calls = {"n": 0}

    def step(net, x, y):
        loss = F.cross_entropy(net(x), y)
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 2 (2 steps per epoch)
            bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
            bn.running_mean = torch.full_like(bn.running_mean, float("nan"))  # a new tensor: autograd keeps its own
        return loss, {}

    # bn_recompute=0: recomputing BatchNorm's statistics after the epoch would rebuild the planted buffer
    cfg = TrainConfig(epochs=3, batch_size=32, limit_train=64, device="cpu", eval_before=False, bn_recompute=0)
    ckpt = tmp_path / "t.safetensors.ckpt"
    trainee = Trainee("teacher-train", model, step, data.info.mean, data.info.std)
    with pytest.raises(TrainingError, match="non-finite weights .*after epoch 2"):
        fit(trainee, RunContext.of(cfg, data, torch.device("cpu")), RunIO(ckpt))
    kept = torch.load(ckpt, weights_only=True)
    assert kept["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in kept["model"].values() if t.is_floating_point())
    with pytest.raises(ArtifactError, match="digest"):  # and it is intact: a forged edit is still caught
        kept["epoch"] = 2
        torch.save(kept, ckpt)
        TrainState(model, *_opt_sched(), torch.Generator()).load(ckpt, "teacher-train")
