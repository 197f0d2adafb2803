"""The training loop reads the loss back from the device once per log interval, not every step: the sums are
the ones Python floats gave, a non-finite loss still stops the run with its one line (naming the first bad
step), and no non-finite model is checkpointed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from enofctl.data import load_dataset
from enofctl.errors import TrainingError
from enofctl.stages import TrainConfig
from enofctl.stages.context import RunContext
from enofctl.stages.loop import LossSums, RunIO, Trainee, fit
from enofctl.stages.train_state import checkpoint_path, read_checkpoint, resume_changes

CPU = torch.device("cpu")
RECIPE = dict(epochs=2, batch_size=32, lr=0.1, augment=False, device="cpu", eval_before=False)  # 16 steps/epoch


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))


class Step:
    """Cross-entropy with one detached term; from global step ``nan_at`` on (1-based), a NaN loss."""

    def __init__(self, nan_at: int | None = None):
        self.nan_at, self.calls = nan_at, 0

    def __call__(self, net, x, y):
        self.calls += 1
        loss = F.cross_entropy(net(x), y)
        if self.nan_at is not None and self.calls >= self.nan_at:
            loss = loss * float("nan")
        return loss, {"ce": loss.detach()}


def _fit(step: Step, out: Path | None = None, **recipe) -> list[dict]:
    data = load_dataset("synthetic")
    trainee = Trainee("test", _linear(), step, data.info.mean, data.info.std)
    io = RunIO(checkpoint_path(out) if out else None)
    return fit(trainee, RunContext.of(TrainConfig(**{**RECIPE, **recipe}), data, CPU), io)


def test_loss_sums_equal_python_float_sums() -> None:
    losses = torch.rand(20, generator=torch.Generator().manual_seed(0))
    sums = LossSums(CPU)
    expected = 0.0
    for i, v in enumerate(losses):
        sums.add(i + 1, v, {"t": v * 2}, 7)
        expected += v.item() * 7
    out = sums.read()
    assert out["loss"] == expected  # bit for bit: float64 on the device, as Python floats were
    assert out["t"] == sum((v * 2).item() * 7 for v in losses)
    assert sums.seen == 140
    sums.check(1)  # all finite
    sums.add(21, torch.tensor(1.0), {"t": 0.1}, 3)  # a step_loss that still logs Python floats
    assert sums.read()["t"] == sum((v * 2).item() * 7 for v in losses) + 0.1 * 3


def test_loss_sums_name_the_first_non_finite_step() -> None:
    sums = LossSums(CPU)
    for step, v in enumerate([1.0, 2.0, float("inf"), float("nan"), 3.0], start=1):
        sums.add(step, torch.tensor(v), {}, 1)
    with pytest.raises(TrainingError, match=r"^non-finite loss at epoch 4, step 3; lower --lr"):
        sums.check(4)


@pytest.mark.parametrize(("log_every", "reads"), [(1, 16 + 1), (5, 3 + 1), (50, 1)])
def test_loss_is_read_once_per_log_interval(monkeypatch, log_every: int, reads: int) -> None:
    calls = []
    original = LossSums.check
    monkeypatch.setattr(LossSums, "check", lambda self, epoch: calls.append(epoch) or original(self, epoch))
    _fit(Step(), epochs=1, log_every=log_every)
    assert len(calls) == reads  # every log_every steps, and once at the end of the epoch


def test_history_does_not_depend_on_the_log_interval() -> None:
    a, b = _fit(Step(), log_every=1), _fit(Step(), log_every=50)
    strip = [{k: v for k, v in r.items() if "seconds" not in k} for r in a]
    assert strip == [{k: v for k, v in r.items() if "seconds" not in k} for r in b]
    assert a[0]["ce"] == a[0]["loss"]


@pytest.mark.parametrize("log_every", [1, 4, 50])
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path, log_every: int) -> None:
    out = tmp_path / "m.safetensors"
    with pytest.raises(TrainingError, match=r"^non-finite loss at epoch 2, step 3; lower --lr"):
        _fit(Step(nan_at=16 + 3), out, log_every=log_every)  # step 3 of epoch 2
    ckpt = checkpoint_path(out)
    assert ckpt.exists()
    state = read_checkpoint(ckpt, "test")
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_non_finite_loss_in_the_first_epoch_writes_no_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    with pytest.raises(TrainingError, match=r"step 2;"):
        _fit(Step(nan_at=2), out, log_every=50)
    assert not checkpoint_path(out).exists() and not out.exists()



def test_log_every_is_safe_to_change_on_resume(tmp_path: Path) -> None:
    old = {"epochs": 2, "lr": 0.1}  # a checkpoint written before log_every existed
    assert resume_changes(tmp_path / "c", old, {**old, "log_every": 50}, 1) == {}
    assert resume_changes(tmp_path / "c", {**old, "log_every": 50}, {**old, "log_every": 5}, 1) == {"log_every": 50}


def test_resume_with_other_workers_continues_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    data = load_dataset("synthetic")

    def run(workers: int, stop: bool) -> list[dict]:
        def progress(ev) -> None:
            if ev.metrics and stop:
                raise KeyboardInterrupt

        trainee = Trainee("test", _linear(), Step(), data.info.mean, data.info.std)
        io = RunIO(checkpoint_path(out), resume=True, progress=progress)
        return fit(trainee, RunContext.of(TrainConfig(**{**RECIPE, "workers": workers}), data, CPU), io)

    with pytest.raises(KeyboardInterrupt):
        run(0, stop=True)
    history = run(3, stop=False)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["resumed_workers_was"] == 0
    straight = _fit(Step(), workers=3)
    assert history[1]["loss"] == straight[1]["loss"]  # the same run as without the interruption
