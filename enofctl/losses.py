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
