"""Losses, each a pure function of tensors (no modules, no state)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any

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


@dataclass(frozen=True)
class DistillWeights:
    """The weights and temperatures of `distill_loss` (`DistillWeights.of(DistillConfig)` makes one)."""

    label_smoothing: float = 0.0
    kd_alpha: float = 0.0
    kd_tau: float = 4.0
    laf_lambda: float = 0.0
    laf_tau: float = 20.0
    act_reg: float = 0.0
    act_reg_kind: str = "l1"
    act_reg_weights: dict[str, float] = field(default_factory=dict)
    logit_reg: float = 0.0

    @property
    def needs_teacher(self) -> bool:
        return bool(self.laf_lambda or self.kd_alpha)

    @classmethod
    def of(cls, cfg: Any) -> DistillWeights:
        """The weights a `DistillConfig` (or any object with these fields) gives."""
        return cls(**{f.name: copy.copy(getattr(cfg, f.name)) for f in fields(cls)})


@dataclass
class StudentOutput:
    """One training step of the student: ``logits`` [B, K], output feature ``feature`` [B, F], and each
    spiking layer's mean firing rate (0-d tensors with grad; empty without the activity regularizer)."""

    logits: torch.Tensor
    feature: torch.Tensor
    rates: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class TeacherOutput:
    """The frozen teacher on the same batch: its ``logits`` [B, K] (no grad) and its classifier ``head``."""

    logits: torch.Tensor
    head: torch.nn.Module


def distill_loss(student: StudentOutput, y: torch.Tensor, teacher: TeacherOutput | None,
                 w: DistillWeights) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(1 - a) CE + a KD + lambda L_AF + w_act act + w_logit logit`` and its terms (those switched on).

    With ``a = 0`` the first part is plain CE. ``teacher`` is needed when KD or L_AF is on (else None)."""
    ce = F.cross_entropy(student.logits, y, label_smoothing=w.label_smoothing)
    terms = {"ce": ce}
    loss = ce
    if w.needs_teacher and teacher is None:
        raise ValueError("distill_loss: KD and L_AF need the teacher's output")
    if w.kd_alpha:
        terms["kd"] = logit_kd(student.logits, teacher.logits, w.kd_tau)
        loss = (1 - w.kd_alpha) * ce + w.kd_alpha * terms["kd"]
    if w.laf_lambda:
        terms["laf"] = laf_loss(student.feature, teacher.logits, teacher.head, w.laf_tau)
        loss = loss + w.laf_lambda * terms["laf"]
    if w.act_reg:
        terms["act"] = activation_reg(student.rates, w.act_reg_kind, w.act_reg_weights)
        loss = loss + w.act_reg * terms["act"]
    if w.logit_reg:
        terms["logit"] = logits_reg(student.logits)
        loss = loss + w.logit_reg * terms["logit"]
    return loss, terms
