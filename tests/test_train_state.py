"""Training checkpoints: what `TrainState` writes is what it reads back, and anything else at OUT.ckpt is
refused with a one-line error, not a KeyError or an unpickling trace."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from clihelp import assert_one_error_line, run

from enofctl.distributed import Ranks
from enofctl.errors import ArtifactError, UsageError
from enofctl.stages.train_state import TrainState, checkpoint_path, state_digest


def _state(seed: int = 0) -> TrainState:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return TrainState(model, opt, sched, torch.Generator().manual_seed(seed))


def _step(st: TrainState) -> None:
    st.model(torch.ones(4, 3)).sum().backward()
    st.optimizer.step()
    st.scheduler.step()


def test_round_trip(tmp_path: Path) -> None:
    a = _state()
    _step(a)
    a.history.append({"epoch": 0, "test_top1": 0.25, "seconds": 0.1, "train_seconds": 0.0})
    a.record({"epoch": 1, "loss": 1.0, "val_top1": 0.5, "seconds": 1.0, "train_seconds": 0.75})
    a.generator.manual_seed(7)
    path = tmp_path / "m.ckpt"
    a.save(path, "test")
    b = _state(seed=1)
    b.load(path, "test")
    assert (b.epoch, b.history, b.best["epoch"], b.train_seconds) == (1, a.history, 1, 0.75)
    wa, wb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert b.optimizer.state_dict()["state"].keys() == a.optimizer.state_dict()["state"].keys()
    assert torch.equal(b.generator.get_state(), a.generator.get_state())
    assert [p.name for p in tmp_path.iterdir()] == ["m.ckpt"]


def test_best_keeps_the_first_highest_validation_epoch() -> None:
    st = _state()
    for epoch, val in ((1, 0.5), (2, 0.7), (3, 0.7), (4, 0.6)):
        st.record({"epoch": epoch, "val_top1": val})
    assert (st.epoch, st.best["epoch"], st.best["val_top1"]) == (4, 2, 0.7)


def test_train_seconds_of_an_older_checkpoint_falls_back_to_seconds() -> None:
    st = _state()
    st.history = [{"epoch": 1, "seconds": 2.0}, {"epoch": 2, "seconds": 3.0}]
    assert st.train_seconds == 5.0


@pytest.mark.parametrize("content, error, needle", [
    (b"not a checkpoint", ArtifactError, "not a readable training checkpoint"),
    ({"foo": 1}, ArtifactError, "no stage, epoch, history"),
    ([1, 2, 3], ArtifactError, "not an enofctl training checkpoint"),
    ("other", UsageError, "belongs to a other run"),
    ("bad-model", ArtifactError, "does not fit this run"),
    ("bad-epoch", ArtifactError, "bad epoch count"),
])
def test_a_foreign_or_broken_checkpoint_is_refused(tmp_path: Path, content, error, needle) -> None:
    path = tmp_path / "m.ckpt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content in ("other", "bad-model", "bad-epoch"):
        _state().save(path, "other" if content == "other" else "test")
        if content != "other":
            raw = torch.load(path, weights_only=True)
            if content == "bad-model":
                raw["model"] = {"weight": torch.zeros(5, 5)}
            else:
                raw["epoch"] = "one"
            raw["digest"] = state_digest({k: v for k, v in raw.items() if k != "digest"})  # a consistent forgery
            torch.save(raw, path)
    else:
        torch.save(content, path)
    with pytest.raises(error, match=needle) as e:
        _state().load(path, "test")
    assert "\n" not in str(e.value)


def test_cli_resume_from_a_junk_checkpoint_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "t.safetensors"
    checkpoint_path(out).write_bytes(b"\x00" * 64)
    args = ("teacher", "train", "--dataset", "synthetic", "--width", "0.125", "--epochs", "1", "--limit-train",
            "32", "--device", "cpu", "--resume", "--quiet", "--out", out)
    assert_one_error_line(*run(*args), 1, "not a readable training checkpoint")
    torch.save({"epoch": 1}, checkpoint_path(out))
    assert_one_error_line(*run(*args), 1, "not an enofctl training checkpoint")


def test_ranks_without_torchrun_are_one_process() -> None:
    ranks = Ranks.here(torch.device("cpu"))
    model = nn.Linear(2, 2)
    assert ranks.main and ranks.size == 1 and ranks.shard == (0, 1)
    assert ranks.wrap(model, sync_bn=True) == (model, model)
    assert ranks.sum([1.0, 2.0]) == [1.0, 2.0]
    called = []
    ranks.on_main(lambda: called.append(1))
    assert called == [1] and ranks.main_only(print) is print
