"""Issue #24: --limit-train as one fixed subset, distill --init scratch, and the --recipe enof-cifar preset."""

from __future__ import annotations

import torch
import torch.nn as nn
from clihelp import TINY, ok

from enofctl import artifacts
from enofctl.data import DATASETS, Data, TensorSplit, limit_train, load_dataset, stratified_subset
from enofctl.schema import NeuronSpec
from enofctl.stages import DistillConfig, TrainConfig
from enofctl.stages.context import RunContext
from enofctl.stages.distill import RECIPES, DistillInputs, FrozenTeacher, _start, with_recipe
from enofctl.stages.loop import Trainee, fit

N = 200
LABELS = torch.tensor([0] * 100 + [1] * 60 + [2] * 40)


def _indexed_data() -> Data:
    """200 training images whose pixels all hold their own index / 1000, so a batch tells which samples it has."""
    info = DATASETS["synthetic"]
    x = (torch.arange(N, dtype=torch.float32) / 1000).view(N, 1, 1, 1).expand(N, 3, 16, 16).contiguous()
    split = TensorSplit(x, LABELS.clone(), info)
    return Data(info, split, TensorSplit(x[:8], LABELS[:8].clone(), info), info.classes)


def test_limit_train_is_the_same_stratified_subset_every_epoch() -> None:
    seen: list[set[int]] = []

    def step(net, x, y):
        ids = torch.round(x[:, 0, 0, 0] * 1000).long()
        assert torch.equal(LABELS[ids], y)  # the labels travel with their images
        seen.append(set(ids.tolist()))
        loss = net(x).logsumexp(1).mean()
        return loss, {}

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    cfg = TrainConfig(epochs=3, batch_size=16, limit_train=48, augment=False, device="cpu", eval_before=False,
                      seed=3, workers=0)
    fit(Trainee("t", model, step, (0.0,) * 3, (1.0,) * 3), RunContext.of(cfg, _indexed_data(), torch.device("cpu")))
    assert len(seen) == 3 * 3  # 48 samples, batches of 16, 3 epochs
    epochs = [set().union(*seen[i : i + 3]) for i in range(0, 9, 3)]
    assert epochs[0] == epochs[1] == epochs[2] and len(epochs[0]) == 48
    assert sorted(epochs[0]) == stratified_subset(LABELS, 48, 3).tolist()
    counts = torch.bincount(LABELS[sorted(epochs[0])], minlength=3)[:3].tolist()
    assert all(abs(c - 48 * share) <= 1 for c, share in zip(counts, (0.5, 0.3, 0.2), strict=True))  # stratified
    assert stratified_subset(LABELS, 48, 4).tolist() != stratified_subset(LABELS, 48, 3).tolist()  # the seed draws


def test_limit_train_record() -> None:
    data = _indexed_data()
    cut = limit_train(data, 48, 3)
    assert len(cut.train) == 48 and cut.train_subset.size == 48 and cut.train_subset.of == N
    assert cut.train_subset.seed == 3 and len(cut.train_subset.sha256) == 64
    assert limit_train(data, 48, 3).train_subset == cut.train_subset  # the same draw every time
    assert limit_train(data, 48, 4).train_subset.sha256 != cut.train_subset.sha256
    assert limit_train(data, None, 3) is data and limit_train(data, N, 3) is data  # nothing cut: no record
    assert limit_train(cut, 48, 3) is cut  # cut once


def test_init_scratch_builds_a_fresh_student(tmp_path) -> None:
    t = tmp_path / "t.safetensors"
    ok("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "64", "--quiet", "--out", t)
    t_art = artifacts.load(t, expect="teacher")
    assert t_art.manifest.data.train_subset.size == 64  # teacher train records its subset too
    src = DistillInputs(FrozenTeacher.of(t_art), load_dataset("synthetic"))
    teacher_w = {k: v for k, v in t_art.tensors.items() if k.endswith("weight") and v.ndim == 4}
    copied, _, _ = _start(DistillConfig(T=2, calibrate=0, device="cpu"), src)
    fresh, manifest, parents = _start(DistillConfig(T=2, init="scratch", device="cpu"), src)
    again, _, _ = _start(DistillConfig(T=2, init="scratch", device="cpu"), src)
    other, _, _ = _start(DistillConfig(T=2, init="scratch", seed=1, device="cpu"), src)
    sd_copy, sd_fresh = copied.body.state_dict(), fresh.body.state_dict()
    assert all(torch.equal(sd_copy[k], w) for k, w in teacher_w.items())
    assert all(not torch.equal(sd_fresh[k], w) for k, w in teacher_w.items())  # every conv freshly drawn
    bn = [k for k in sd_fresh if k.endswith("running_var")]
    assert bn and all(torch.equal(sd_fresh[k], torch.ones_like(sd_fresh[k])) for k in bn)  # fresh BatchNorm
    assert all(torch.equal(sd_fresh[k.replace("var", "mean")], torch.zeros_like(sd_fresh[k])) for k in bn)
    assert all(torch.equal(v, again.body.state_dict()[k]) for k, v in sd_fresh.items())  # fixed by the seed
    assert any(not torch.equal(v, other.body.state_dict()[k]) for k, v in sd_fresh.items())
    assert manifest.calibration is None and parents == [t_art.parent_ref()]
    # through the CLI: recorded in the student's config
    s = tmp_path / "s.safetensors"
    ok("distill", "--teacher", t, "--init", "scratch", "--T", "2", "--epochs", "1", "--limit-train", "64",
       "--limit-test", "32", "--quiet", "--out", s)
    m = artifacts.load(s).manifest
    assert m.config["init"] == "scratch" and m.calibration is None and m.data.train_subset.size == 64


def test_with_recipe_explicit_options_win() -> None:
    fields = {"epochs": 3, "lr": 0.05, "neuron": NeuronSpec(v_th=0.7), "laf_lambda": 0.1}
    out = with_recipe("enof-cifar", fields, given={"epochs", "neuron.v_th"})
    cfg = DistillConfig(**out)
    assert cfg.epochs == 3 and cfg.lr == 0.1 and cfg.momentum == 0.9 and not cfg.nesterov
    assert (cfg.weight_decay, cfg.batch_size, cfg.init, cfg.laf_tau, cfg.laf_lambda, cfg.repact) == (
        1e-4, 128, "scratch", 20.0, 0.1, True)
    assert cfg.neuron.surrogate == "dspike" and cfg.neuron.v_th == 0.7 and cfg.neuron.alpha is None
    assert cfg.autoaugment and cfg.cutout == 16
    assert with_recipe(None, fields) is fields
    assert set(RECIPES) == {"enof-cifar"}


def test_cli_recipe_preset(tmp_path) -> None:
    t = tmp_path / "t.safetensors"
    ok("teacher", "train", "--dataset", "synthetic", *TINY, "--limit-train", "64", "--quiet", "--out", t)
    s = tmp_path / "s.safetensors"
    ok("distill", "--teacher", t, "--recipe", "enof-cifar", "--epochs", "1", "--T", "2", "--limit-train", "64",
       "--limit-test", "32", "--lr", "0.05", "--quiet", "--out", s)
    m = artifacts.load(s).manifest
    c = m.config
    assert (c["epochs"], c["lr"], c["nesterov"], c["weight_decay"], c["batch_size"], c["init"]) == (
        1, 0.05, False, 1e-4, 128, "scratch")  # --epochs and --lr given: they override the preset
    assert m.spiking.neuron.surrogate == "dspike" and c["autoaugment"] and c["cutout"] == 16
