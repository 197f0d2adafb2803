"""Losses, each a pure function of tensors (no modules, no state)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def softened_kl(target_logits: torch.Tensor, logits: torch.Tensor, tau: float) -> torch.Tensor:
    """``tau^2 * KL(softmax(target/tau) || softmax(logits/tau))``, batch mean. Gradient flows into ``logits``."""
    return F.kl_div(
        F.log_softmax(logits / tau, dim=-1),
        F.log_softmax(target_logits.detach() / tau, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (tau * tau)


def laf_loss(f_s: torch.Tensor, teacher_logits: torch.Tensor, teacher_head: torch.nn.Module,
             tau: float) -> torch.Tensor:
    """EnOF-SNN's L_AF: the student's feature through the teacher's frozen classifier, matched to the teacher.

    ``f_s`` [B, F] student output feature; ``teacher_logits`` [B, K] = W_a f_a + b_a (no grad);
    ``teacher_head`` the teacher's classifier (its parameters must not require grad).
    """
    z_af = teacher_head(f_s)  # [B, K], grad flows into f_s only
    return softened_kl(teacher_logits, z_af, tau)


def logit_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Hinton-style logit distillation: ``tau^2 * KL(softmax(z_t/tau) || softmax(z_s/tau))``, batch mean.

    Combined as ``(1 - alpha) * CE + alpha * logit_kd`` (Louis et al. 2024; the exact form is unconfirmed)."""
    return softened_kl(teacher_logits, student_logits, tau)


def activation_reg(rates: dict[str, torch.Tensor], kind: str = "l1",
                   weights: dict[str, float] | None = None) -> torch.Tensor:
    """Sum over spiking layers of ``w_l * r_l`` (``l1``) or ``w_l * r_l^2`` (``l2``), ``r_l`` the layer's mean
    firing rate (a 0-d tensor with grad). ``weights``: per-layer factors by layer name (default 1)."""
    if kind not in ("l1", "l2"):
        raise ValueError(f"activation regularization kind must be l1 or l2, not {kind!r}")
    weights = weights or {}
    terms = [weights.get(name, 1.0) * (r if kind == "l1" else r * r) for name, r in rates.items()]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def logits_reg(student_logits: torch.Tensor) -> torch.Tensor:
    """Logits regularization: the batch mean of ``||z_s||_2^2`` (z_s: time-averaged student logits)."""
    return student_logits.pow(2).sum(-1).mean()
