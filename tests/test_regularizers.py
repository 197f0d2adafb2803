"""Logit KD, activation and logits regularization: values on hand-made inputs, and that the activity
regularizer lowers firing rates when a student trains with it."""

from __future__ import annotations

import math

import pytest
import torch
from clihelp import ok

from enofctl.losses import activation_reg, logit_kd, logits_reg
from enofctl.stages import DistillConfig, EvalConfig, distill, evaluate


def test_logit_kd_value_and_zero_for_equal_logits() -> None:
    z_t = torch.tensor([[2.0, 0.0]])
    z_s = torch.tensor([[0.0, 0.0]], requires_grad=True)
    tau = 2.0
    p = torch.softmax(z_t / tau, -1)[0]
    expected = tau**2 * sum(p[i] * math.log(p[i] / 0.5) for i in range(2))
    assert logit_kd(z_s, z_t, tau).item() == pytest.approx(float(expected), rel=1e-6)
    assert logit_kd(z_t.clone(), z_t, tau).item() == pytest.approx(0.0, abs=1e-7)
    logit_kd(z_s, z_t, tau).backward()
    assert z_s.grad is not None and z_s.grad.abs().sum() > 0


def test_activation_reg_l1_l2_and_weights() -> None:
    rates = {"a": torch.tensor(0.2, requires_grad=True), "b": torch.tensor(0.5, requires_grad=True)}
    assert activation_reg(rates, "l1").item() == pytest.approx(0.7)
    assert activation_reg(rates, "l2").item() == pytest.approx(0.04 + 0.25)
    assert activation_reg(rates, "l1", {"b": 2.0}).item() == pytest.approx(1.2)
    activation_reg(rates, "l2").backward()
    assert rates["a"].grad.item() == pytest.approx(0.4) and rates["b"].grad.item() == pytest.approx(1.0)
    assert activation_reg({}, "l1").item() == 0.0
    with pytest.raises(ValueError):
        activation_reg(rates, "l3")


def test_logits_reg_value() -> None:
    z = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert logits_reg(z).item() == pytest.approx((25 + 1) / 2)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = tmp_path_factory.mktemp("reg") / "t.safetensors"
    ok("teacher", "train", "--dataset", "synthetic", "--width", "0.125", "--epochs", "2", "--quiet", "--out", path)
    return path


def _student(teacher, out, **kw):
    cfg = DistillConfig(T=2, epochs=2, limit_train=256, batch_size=32, seed=0, reconstruct=0, **kw)
    res = distill(cfg, teacher, out)
    return res, evaluate(res.path, EvalConfig(speed_batches=0))


def test_activity_regularizer_lowers_firing_rates(teacher, tmp_path) -> None:
    _, base = _student(teacher, tmp_path / "base.safetensors")
    res, reg = _student(teacher, tmp_path / "reg.safetensors", act_reg=2.0, act_reg_kind="l1")
    assert reg.spikes_per_sample < 0.8 * base.spikes_per_sample, (reg.spikes_per_sample, base.spikes_per_sample)
    assert {"ce", "laf", "act"} <= set(res.manifest.history[-1])  # each term logged per epoch
    assert res.manifest.config["act_reg"] == 2.0  # and recorded in the manifest


def test_all_terms_together_are_logged(teacher, tmp_path) -> None:
    res, _ = _student(teacher, tmp_path / "all.safetensors", kd_alpha=0.5, act_reg=0.1, act_reg_kind="l2",
                      logit_reg=0.01, act_reg_weights={"stem.2": 2.0})
    assert {"loss", "ce", "kd", "laf", "act", "logit"} <= set(res.manifest.history[-1])


def test_cli_regularizer_options(teacher, tmp_path) -> None:
    from clihelp import assert_one_error_line, run

    out = tmp_path / "s.safetensors"
    ok("distill", "--teacher", teacher, "--T", "2", "--epochs", "1", "--limit-train", "64", "--quiet",
       "--reconstruct", "0", "--kd-alpha", "0.5", "--act-reg", "0.1", "--act-reg-kind", "l2", "--logit-reg", "0.01",
       "--act-reg-weight", "stem.2=2", "--out", out)
    bad = tmp_path / "bad.safetensors"
    # the layer names are known from the teacher's architecture: refused before any calibration or step
    code, out_text, err = run("distill", "--teacher", teacher, "--act-reg", "0.1", "--act-reg-weight", "nope=1",
                              "--out", bad)
    assert_one_error_line(code, out_text, err, 2, "no spiking layer named 'nope'")
    assert "stem.2" in err
    assert_one_error_line(*run("distill", "--teacher", teacher, "--act-reg-kind", "l3", "--out", bad), 2)
    assert not bad.exists()
