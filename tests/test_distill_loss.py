"""`distill_loss`: the composite value against a hand computation of
``(1 - a) CE + a KD + lambda L_AF + w_act act + w_logit logit``, written here with explicit softmax and logs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn

from enofctl.losses import DistillWeights, StudentOutput, TeacherOutput, distill_loss
from enofctl.stages import DistillConfig

B, K, F = 6, 5, 4


def _log_softmax(z: torch.Tensor) -> torch.Tensor:
    return z - torch.log(torch.exp(z).sum(-1, keepdim=True))


def hand_ce(z: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Cross-entropy with label smoothing eps: (1 - eps) (-log p_y) + eps * mean_k (-log p_k), batch mean."""
    logp = _log_softmax(z)
    nll = -logp[torch.arange(len(y)), y]
    return ((1 - eps) * nll - eps * logp.mean(-1)).mean()


def hand_kl(target: torch.Tensor, logits: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 * batch mean of sum_k p_k (log p_k - log q_k), p = softmax(target/tau), q = softmax(logits/tau)."""
    logp, logq = _log_softmax(target / tau), _log_softmax(logits / tau)
    return tau**2 * (torch.exp(logp) * (logp - logq)).sum(-1).mean()


def _batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, K, generator=g, dtype=torch.float64) * 2
    f_s = torch.randn(B, F, generator=g, dtype=torch.float64).requires_grad_()
    z_t = torch.randn(B, K, generator=g, dtype=torch.float64) * 3
    head = nn.Linear(F, K).double()
    for p in head.parameters():
        p.requires_grad_(False)
    rates = {"a": torch.tensor(0.2, dtype=torch.float64), "b": torch.tensor(0.05, dtype=torch.float64)}
    y = torch.randint(0, K, (B,), generator=g)
    return StudentOutput(logits, f_s, rates), y, TeacherOutput(z_t, head)


WEIGHTS = [
    DistillWeights(),  # plain CE
    DistillWeights(laf_lambda=0.1, laf_tau=20.0),  # EnOF-SNN
    DistillWeights(kd_alpha=0.5, kd_tau=4.0),
    DistillWeights(label_smoothing=0.1, kd_alpha=0.3, kd_tau=2.0, laf_lambda=0.7, laf_tau=3.0, act_reg=0.4,
                   act_reg_kind="l2", act_reg_weights={"b": 3.0}, logit_reg=0.01),
    DistillWeights(kd_alpha=1.0, act_reg=2.0, logit_reg=0.5),
]


@pytest.mark.parametrize("w", WEIGHTS)
def test_value_equals_the_hand_computed_composite(w: DistillWeights) -> None:
    s, y, t = _batch()
    loss, terms = distill_loss(s, y, t if w.needs_teacher else None, w)
    ce = hand_ce(s.logits, y, w.label_smoothing)
    kd = hand_kl(t.logits, s.logits, w.kd_tau)
    laf = hand_kl(t.logits, t.head(s.feature), w.laf_tau)
    r = {k: v if w.act_reg_kind == "l1" else v * v for k, v in s.rates.items()}
    act = sum(w.act_reg_weights.get(k, 1.0) * v for k, v in r.items())
    logit = (s.logits**2).sum(-1).mean()
    a = w.kd_alpha
    expected = (1 - a) * ce + a * kd + w.laf_lambda * laf + w.act_reg * act + w.logit_reg * logit
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    on = {"ce": True, "kd": bool(a), "laf": bool(w.laf_lambda), "act": bool(w.act_reg), "logit": bool(w.logit_reg)}
    assert set(terms) == {k for k, v in on.items() if v}
    for name, value in (("ce", ce), ("kd", kd), ("laf", laf), ("act", act), ("logit", logit)):
        if name in terms:
            torch.testing.assert_close(terms[name], value, rtol=1e-10, atol=1e-12)


def test_laf_trains_the_student_feature_not_the_teacher() -> None:
    s, y, t = _batch()
    loss, _ = distill_loss(s, y, t, DistillWeights(laf_lambda=1.0))
    loss.backward()
    assert s.feature.grad is not None and s.feature.grad.abs().sum() > 0
    assert all(p.grad is None for p in t.head.parameters())


def test_kd_or_laf_without_the_teacher_is_refused() -> None:
    s, y, _ = _batch()
    with pytest.raises(ValueError, match="teacher"):
        distill_loss(s, y, None, DistillWeights(kd_alpha=0.5))


def test_the_config_passes_every_weight() -> None:
    cfg = DistillConfig(label_smoothing=0.1, kd_alpha=0.2, kd_tau=3.0, laf_lambda=0.4, laf_tau=5.0, act_reg=0.6,
                        act_reg_kind="l2", act_reg_weights={"x": 2.0}, logit_reg=0.07)
    w = DistillWeights.of(cfg)
    assert {f.name: getattr(w, f.name) for f in dataclasses.fields(w)} == {
        f.name: getattr(cfg, f.name) for f in dataclasses.fields(w)}
