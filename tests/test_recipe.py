"""The training recipe in `fit`: the validation pass and the best epoch's weights (also across --resume),
the untrained model's accuracy as history row 0 (and that it changes no training draw), training time, and
the dtypes the spiking layers see under bfloat16 autocast (what `--amp` runs on CUDA, checked here with the
CPU's autocast)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from enofctl import artifacts
from enofctl.data import load_dataset, split_validation
from enofctl.models import build_model
from enofctl.schema import NeuronSpec, SpikingSpec
from enofctl.spiking import SpikingNeuron, make_spiking
from enofctl.stages import TeacherConfig, TrainConfig, train_teacher
from enofctl.stages.common import ProgressEvent, accuracy, best_epoch, best_metrics
from enofctl.stages.context import RunContext
from enofctl.stages.loop import RunIO, Trainee, fit
from enofctl.stages.train_state import checkpoint_path

CPU = torch.device("cpu")
RECIPE = dict(epochs=4, batch_size=32, lr=0.1, val_fraction=0.25, augment=False, device="cpu")


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))


class Flip:
    """Trains on the true labels in epoch 1 and on wrong ones after it, so validation accuracy peaks at
    epoch 1; records the weights after every epoch; can stop the run after an epoch (like Ctrl-C)."""

    def __init__(self, model: nn.Module, done: int = 0, stop_after: int | None = None):
        self.model, self.done, self.stop_after = model, done, stop_after
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def loss(self, net, x, y):
        return F.cross_entropy(net(x), y if self.done == 0 else (y + 1) % 4), {}

    def progress(self, ev: ProgressEvent) -> None:
        if ev.metrics:
            self.done = ev.epoch
            self.weights[ev.epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}
            if ev.epoch == self.stop_after:
                raise KeyboardInterrupt


def _fit(model: nn.Module, flip: Flip, out: Path, resume: bool = False, **recipe) -> list[dict]:
    data = load_dataset("synthetic")
    trainee = Trainee("test", model, flip.loss, data.info.mean, data.info.std)
    io = RunIO(checkpoint_path(out), resume, flip.progress)
    return fit(trainee, RunContext.of(TrainConfig(**{**RECIPE, **recipe}), data, CPU), io)


def _untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "train_seconds")} for row in history]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fit_keeps_the_weights_of_the_best_validation_epoch(tmp_path: Path) -> None:
    model = _linear()
    flip = Flip(model)
    history = _fit(model, flip, tmp_path / "m.safetensors")
    assert [row["epoch"] for row in history] == [0, 1, 2, 3, 4]  # row 0: the untrained model
    val = [row["val_top1"] for row in history[1:]]
    assert val[0] > max(val[1:]) and val[0] > 0.5  # the set-up works: epoch 1 is the best
    assert best_epoch(history) is history[1]
    assert best_metrics(history) == {"best_epoch": 1, "best_val_top1": val[0]}
    assert _same(model.state_dict(), flip.weights[1])  # not the last epoch's weights
    data = split_validation(load_dataset("synthetic"), RECIPE["val_fraction"], seed=0)
    assert accuracy(model, data.val, CPU, data.info.mean, data.info.std)["top1"] == val[0]
    for row in history:
        assert {"val_top1", "val_top5", "test_top1", "test_top5", "seconds", "train_seconds"} <= set(row)


def test_best_weights_survive_a_resume(tmp_path: Path) -> None:
    ref_model = _linear()
    ref = _fit(ref_model, Flip(ref_model), tmp_path / "ref.safetensors")
    out = tmp_path / "m.safetensors"
    with pytest.raises(KeyboardInterrupt):  # stopped after epoch 2: the best so far is epoch 1
        _fit(_linear(), Flip(_linear(), stop_after=2), out)
    saved = torch.load(checkpoint_path(out), weights_only=True)
    assert saved["best"]["epoch"] == 1 and [row["epoch"] for row in saved["history"]] == [0, 1, 2]
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))  # other initial weights: all from the ckpt
    history = _fit(model, Flip(model, done=2), out, resume=True)
    assert _untimed(history) == _untimed(ref)
    assert history[:3] == saved["history"]  # epochs 0-2 (times included) come from the checkpoint, not run again
    assert history[3]["train_seconds"] > history[2]["train_seconds"]  # the clock goes on from the checkpoint
    assert _same(model.state_dict(), ref_model.state_dict())


def test_epoch_zero_changes_no_training_draw(tmp_path: Path) -> None:
    """Row 0 is measured under a forked random state: with dropout (global RNG) and shuffling (the loop's
    generator), the same seed trains exactly the same weights with and without it."""
    runs = {}
    for before in (True, False):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 16 * 16, 4))
        history = _fit(model, Flip(model), tmp_path / f"{before}.safetensors", eval_before=before)
        runs[before] = model.state_dict(), history
    (w_on, h_on), (w_off, h_off) = runs[True], runs[False]
    assert _same(w_on, w_off)
    assert [row["epoch"] for row in h_on] == [0, 1, 2, 3, 4] and [row["epoch"] for row in h_off] == [1, 2, 3, 4]
    assert _untimed(h_on[1:]) == _untimed(h_off)
    assert h_on[0]["train_seconds"] == 0.0 and "loss" not in h_on[0]


def test_train_seconds_add_up_the_training_time_only(tmp_path: Path) -> None:
    model = _linear()
    history = _fit(model, Flip(model), tmp_path / "m.safetensors")
    train = [row["train_seconds"] for row in history]
    assert train[0] == 0.0 and all(b > a for a, b in zip(train, train[1:], strict=False))
    for i, row in enumerate(history[1:], 1):  # each epoch adds less than its seconds, which include evaluation
        assert 0 < train[i] - train[i - 1] < row["seconds"]


def test_teacher_without_eval_before(tmp_path: Path) -> None:
    cfg = TeacherConfig(dataset="synthetic", model_kwargs={"width": 0.125}, epochs=2, limit_train=64, device="cpu",
                        eval_before=False)
    m = train_teacher(cfg, tmp_path / "t.safetensors").manifest
    assert [row["epoch"] for row in m.history] == [1, 2] and m.config["eval_before"] is False
    on = train_teacher(cfg.model_copy(update={"eval_before": True}), tmp_path / "t0.safetensors").manifest
    assert [row["epoch"] for row in on.history] == [0, 1, 2]
    assert on.metrics == m.metrics  # the same weights


def test_teacher_with_validation_resumes_bit_exact(tmp_path: Path) -> None:
    cfg = TeacherConfig(dataset="synthetic", model_kwargs={"width": 0.125}, epochs=3, limit_train=128,
                        val_fraction=0.25, cutout=4, autoaugment=True, device="cpu", seed=2)
    ref = train_teacher(cfg, tmp_path / "ref.safetensors")

    def stop(ev: ProgressEvent) -> None:
        if ev.metrics and ev.epoch == 2:
            raise KeyboardInterrupt

    out = tmp_path / "t.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_teacher(cfg, out, progress=stop)
    res = train_teacher(cfg, out, resume=True)
    assert _same(load_file(str(out)), load_file(str(ref.path)))
    assert res.manifest.metrics == ref.manifest.metrics
    m = artifacts.load(out).manifest
    best = best_epoch(m.history)
    assert m.metrics.best_epoch == best["epoch"] and m.metrics.best_val_top1 == best["val_top1"]
    assert not checkpoint_path(out).exists()


@pytest.mark.parametrize("surrogate", ["rect", "triangle", "sigmoid", "atan", "tanh"])
def test_spiking_neuron_in_bfloat16_matches_float32(surrogate: str) -> None:
    """bfloat16 in, bfloat16 spikes and gradient out, the same values as in float32 (inputs on a grid that
    both represent exactly: multiples of 1/16, decay 1/4, threshold 1/2)."""
    neuron = SpikingNeuron(NeuronSpec(surrogate=surrogate), T=2)
    x = (torch.randn(2 * 8, 4, 3, 3) * 16).round() / 16  # [T*B, C, H, W]
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        xi = x.to(dtype).detach().requires_grad_()
        spk = neuron(xi)
        (spk * torch.linspace(-1, 1, spk.shape[0]).view(-1, 1, 1, 1)).sum().backward()
        assert spk.dtype == dtype and xi.grad.dtype == dtype
        out[dtype] = spk.float(), xi.grad.float()
    assert torch.equal(out[torch.float32][0], out[torch.bfloat16][0])
    assert set(out[torch.bfloat16][0].unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(out[torch.bfloat16][1], out[torch.float32][1], rtol=2e-2, atol=2e-2)


def test_student_training_step_under_bfloat16_autocast() -> None:
    ann = build_model("resnet20", 4, 3, {"width": 0.125})
    net = make_spiking(ann, SpikingSpec(T=2), (3, 16, 16)).train()
    seen = []
    for m in net.neurons().values():
        m.register_forward_hook(lambda _m, i, o: seen.append((i[0].dtype, o.dtype)))
    x, y = torch.rand(8, 3, 16, 16), torch.arange(8) % 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(x)
        loss = F.cross_entropy(logits, y)
    assert set(seen) == {(torch.bfloat16, torch.bfloat16)}  # the neurons run in bfloat16
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads.values())
    assert grads["body.stem.0.weight"].abs().sum() > 0  # the gradient reaches the first layer through every neuron
