"""The losses against explicit softmax / log formulas, and the laws they obey."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from enofctl.losses import laf_loss, softened_kl


def hand_kl(target: torch.Tensor, logits: torch.Tensor, tau: float) -> torch.Tensor:
    """tau^2 * row mean of sum_k p_k (log p_k - log q_k); p = softmax(target/tau), q = softmax(logits/tau)."""
    et, es = torch.exp(target / tau), torch.exp(logits / tau)
    p = et / et.sum(-1, keepdim=True)
    q = es / es.sum(-1, keepdim=True)
    return tau**2 * (p * (torch.log(p) - torch.log(q))).sum(-1).mean()


def _frozen_head(f: int, k: int) -> nn.Linear:
    head = nn.Linear(f, k).double()
    for p in head.parameters():
        p.requires_grad_(False)  # as the distill stage freezes the teacher
    return head


def test_softened_kl_closed_form() -> None:
    # p = (1/2, 1/2), q = (3/4, 1/4): KL(p || q) = 1/2 ln(4/3); KL(q || p) would be 3/4 ln(3/2) + 1/4 ln(1/2)
    t = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    for tau in (1.0, 2.0, 20.0):
        s = torch.tensor([[tau * math.log(3.0), 0.0]], dtype=torch.float64)
        assert softened_kl(t, s, tau).item() == pytest.approx(tau**2 * 0.5 * math.log(4 / 3), rel=1e-12)


@pytest.mark.parametrize("tau", [1.0, 4.0, 20.0])
def test_softened_kl_equals_hand_formula(tau: float) -> None:
    f64 = torch.float64
    t = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 0.2, -0.7, 1.1], [5.0, 5.0, -5.0, 0.0]], dtype=f64)
    s = torch.tensor([[0.3, 0.1, -1.0, 2.0], [2.0, -1.0, 0.0, 0.4], [-3.0, 4.0, 1.0, 0.5]], dtype=f64)
    torch.testing.assert_close(softened_kl(t, s, tau), hand_kl(t, s, tau), rtol=1e-10, atol=1e-12)
    assert softened_kl(t, t, tau).item() == pytest.approx(0.0, abs=1e-12)


def test_softened_kl_gradient_flows_into_logits_only() -> None:
    t = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    s = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    tau = 4.0
    softened_kl(t, s, tau).backward()
    assert t.grad is None
    # d/ds [tau^2 KL] = tau (q - p) / B
    p, q = torch.softmax(t.detach() / tau, -1), torch.softmax(s.detach() / tau, -1)
    torch.testing.assert_close(s.grad, tau * (q - p) / 3)


@pytest.mark.parametrize("tau", [1.0, 20.0])
def test_laf_loss_equals_hand_formula(tau: float) -> None:
    B, F, K = 3, 4, 5
    head = _frozen_head(F, K)
    f_a = torch.randn(B, F, dtype=torch.float64)
    z_t = f_a @ head.weight.T + head.bias  # teacher logits, W_a f_a + b_a
    f_s = torch.rand(B, F, dtype=torch.float64, requires_grad=True)
    loss = laf_loss(f_s, z_t, head, tau)
    z_af = f_s @ head.weight.T + head.bias
    torch.testing.assert_close(loss, hand_kl(z_t, z_af, tau), rtol=1e-10, atol=1e-12)

    loss.backward()
    assert f_s.grad is not None and f_s.grad.abs().sum() > 0
    assert head.weight.grad is None and head.bias.grad is None
    # d/df_s = [tau (q - p) / B] W
    p, q = torch.softmax(z_t / tau, -1), torch.softmax(z_af.detach() / tau, -1)
    torch.testing.assert_close(f_s.grad, (tau * (q - p) / B) @ head.weight)


def test_laf_loss_is_zero_when_student_feature_equals_teacher_feature() -> None:
    head = _frozen_head(6, 4)
    f_a = torch.randn(2, 6, dtype=torch.float64)
    with torch.no_grad():
        z_t = head(f_a)
    assert laf_loss(f_a.clone(), z_t, head, 20.0).item() == pytest.approx(0.0, abs=1e-12)
    assert laf_loss(f_a + 0.5, z_t, head, 20.0).item() > 0


def test_laf_loss_does_not_train_the_teacher_head_or_logits() -> None:
    """Only f_s gets a gradient: not the frozen head, nor the teacher logits even if they carry a graph."""
    head = _frozen_head(4, 3)
    f_a = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    w_a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    z_t = f_a @ w_a.T
    f_s = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    laf_loss(f_s, z_t, head, 2.0).backward()
    assert f_s.grad.abs().sum() > 0
    assert f_a.grad is None and w_a.grad is None
    assert all(p.grad is None for p in head.parameters())
    assert all(torch.equal(before[k], v) for k, v in head.state_dict().items())


_row = st.lists(st.floats(-30.0, 30.0), min_size=3, max_size=3)


@settings(max_examples=80, deadline=None)
@given(t=st.lists(_row, min_size=1, max_size=4), data=st.data(), tau=st.floats(0.5, 30.0))
def test_softened_kl_is_nonnegative_and_zero_on_identical(t, data, tau: float) -> None:
    s = data.draw(st.lists(_row, min_size=len(t), max_size=len(t)))
    tt, ss = torch.tensor(t, dtype=torch.float64), torch.tensor(s, dtype=torch.float64)
    kl = softened_kl(tt, ss, tau).item()
    assert math.isfinite(kl) and kl >= -1e-9
    assert kl == pytest.approx(hand_kl(tt, ss, tau).item(), rel=1e-6, abs=1e-9)
    assert softened_kl(tt, tt, tau).item() == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), tau=st.floats(0.5, 30.0), scale=st.floats(0.0, 10.0))
def test_laf_loss_is_nonnegative(seed: int, tau: float, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    head = _frozen_head(4, 3)
    with torch.no_grad():
        head.weight.copy_(torch.randn(3, 4, generator=g, dtype=torch.float64))
        z_t = head(torch.randn(2, 4, generator=g, dtype=torch.float64) * scale)
    f_s = torch.randn(2, 4, generator=g, dtype=torch.float64) * scale
    assert laf_loss(f_s, z_t, head, tau).item() >= -1e-9
