"""Stage 3: surrogate-gradient BPTT training of the spiking student with ``CE + lambda * L_AF`` (EnOF-SNN).

The teacher is frozen. The student's output feature f_s goes through the teacher's classifier
(``get_classifier()``) and is matched to the teacher's logits with a temperature-softened KL; the student
trains, and is evaluated with, its own classifier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from enofctl import artifacts
from enofctl.artifacts import Artifact, Manifest
from enofctl.data import dataset_info, load_dataset, split_validation
from enofctl.distributed import barrier, world
from enofctl.errors import UsageError
from enofctl.losses import activation_reg, laf_loss, logit_kd, logits_reg
from enofctl.models import feature_dim
from enofctl.spiking import NeuronSpec, SpikingNet, ann_forward_with_feature
from enofctl.stages.common import (
    ProgressFn,
    TrainConfig,
    best_metrics,
    check_recipe,
    finish_checkpoint,
    fit,
    resolve_device,
)
from enofctl.stages.convert import SurrogateConvertConfig, convert_teacher
from enofctl.stages.evaluate import measure
from enofctl.stages.teacher import StageResult


class DistillConfig(TrainConfig):
    epochs: int = Field(30, ge=1)
    lr: float = Field(0.05, gt=0)
    T: int | None = Field(None, ge=1, le=1024, description="time steps; None = the student's T (4 if converted)")
    laf_lambda: float = Field(0.1, ge=0, description="weight of L_AF (authors' code: 0.1; paper unconfirmed)")
    laf_tau: float = Field(20.0, gt=0, description="L_AF temperature (authors' code: 20; paper unconfirmed)")
    kd_alpha: float = Field(0.0, ge=0, le=1, description="logit KD weight: (1 - a) * CE + a * KD (0 = off)")
    kd_tau: float = Field(4.0, gt=0, description="logit KD temperature (unconfirmed; a common default)")
    act_reg: float = Field(0.0, ge=0, description="weight of the firing-rate regularizer (0 = off)")
    act_reg_kind: Literal["l1", "l2"] = Field("l1", description="penalize each layer's mean rate or its square")
    act_reg_weights: dict[str, float] = Field(default_factory=dict, description="per-layer factors (default 1)")
    logit_reg: float = Field(0.0, ge=0, description="weight of the L2 logits regularizer (Louis et al.: 0.01)")
    neuron: NeuronSpec = Field(default_factory=NeuronSpec, description="used when converting the teacher")
    repact: bool = Field(True, description="used when converting the teacher")
    calibrate: int = Field(8, ge=0, le=100_000, description="when converting the teacher: batches of training "
                           "images to calibrate the student on (0 = the plain copy)")
    data_dir: str | None = None


def check_pair(teacher: Artifact, student_manifest: Manifest, student: SpikingNet, t_model) -> None:
    """Refuse a student that the teacher cannot guide (different data, classes, input or feature size)."""
    tm, sm = teacher.manifest, student_manifest
    problems = []
    if tm.data.dataset != sm.data.dataset:
        problems.append(f"dataset {tm.data.dataset} vs {sm.data.dataset}")
    if tm.model.num_classes != sm.model.num_classes:
        problems.append(f"{tm.model.num_classes} vs {sm.model.num_classes} classes")
    if tuple(tm.model.input_size) != tuple(sm.model.input_size):
        problems.append(f"input {tuple(tm.model.input_size)} vs {tuple(sm.model.input_size)}")
    ft, fs = feature_dim(t_model), feature_dim(student.body)
    if ft != fs:
        problems.append(f"feature size {ft} vs {fs}")
    if problems:
        raise UsageError(f"teacher/student mismatch: {'; '.join(problems)}")


def distill(cfg: DistillConfig, teacher: str | Path, out: str | Path, student: str | Path | None = None,
            resume: bool = False, progress: ProgressFn | None = None) -> StageResult:
    out = artifacts.check_output_path(out)
    t_art = artifacts.load(teacher, expect="teacher")
    if student is None:
        conv = SurrogateConvertConfig(T=cfg.T or 4, neuron=cfg.neuron, repact=cfg.repact, calibrate=cfg.calibrate,
                                      data_dir=cfg.data_dir, device=cfg.device)
        s_model, s_manifest = convert_teacher(t_art, conv)
        parents = [t_art.parent_ref()]
    else:
        s_art = artifacts.load(student, expect="student")
        s_manifest = s_art.manifest
        s_model = s_art.build()
        parents = [t_art.parent_ref(), s_art.parent_ref()]
        if cfg.T:
            s_model.set_T(cfg.T)
    device = resolve_device(cfg.device)
    check_recipe(cfg, device, dataset_info(s_manifest.data.dataset))
    t_model = t_art.build().to(device)
    check_pair(t_art, s_manifest, s_model, t_model)
    for p in t_model.parameters():
        p.requires_grad_(False)
    t_head = t_model.get_classifier()
    spec = s_manifest.model
    data = split_validation(load_dataset(s_manifest.data.dataset, cfg.data_dir or s_manifest.data.data_dir),
                            cfg.val_fraction, cfg.seed)
    s_model.to(device)

    unknown = set(cfg.act_reg_weights) - set(s_model.neurons())
    if unknown:
        raise UsageError(f"--act-reg-weights: no spiking layer named {sorted(unknown)[0]!r}; layers: "
                         f"{', '.join(s_model.neurons())}")
    rates: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: rates.__setitem__(n, o.mean()))
             for n, m in s_model.neurons().items()] if cfg.act_reg else []

    def step_loss(net, x, y):
        """CE (or (1 - a) CE + a KD) + lambda L_AF + activation and logits regularization; each term logged."""
        logits, f_s = net(x, with_feature=True)
        ce = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        terms = {"ce": ce}
        loss = ce
        if cfg.laf_lambda or cfg.kd_alpha:
            with torch.no_grad():
                z_t, _ = ann_forward_with_feature(t_model, x)
            if cfg.kd_alpha:
                terms["kd"] = logit_kd(logits, z_t, cfg.kd_tau)
                loss = (1 - cfg.kd_alpha) * ce + cfg.kd_alpha * terms["kd"]
            if cfg.laf_lambda:
                terms["laf"] = laf_loss(f_s, z_t, t_head, cfg.laf_tau)
                loss = loss + cfg.laf_lambda * terms["laf"]
        if cfg.act_reg:
            terms["act"] = activation_reg(rates, cfg.act_reg_kind, cfg.act_reg_weights)
            loss = loss + cfg.act_reg * terms["act"]
        if cfg.logit_reg:
            terms["logit"] = logits_reg(logits)
            loss = loss + cfg.logit_reg * terms["logit"]
        return loss, {k: v.item() for k, v in terms.items()}

    try:
        history = fit("distill", s_model, step_loss, data, cfg, device, spec.mean, spec.std, out, resume, progress)
    finally:
        for h in hooks:
            h.remove()
    run = measure(s_model, data.test, device, spec.mean, spec.std, spec.input_size,
                  limit=cfg.limit_test)  # every rank: the whole split (or its first limit_test samples)
    manifest = Manifest(
        kind="student", stage="distill", model=spec, data=s_manifest.data, spiking=s_model.spec,
        config=cfg.model_dump(), history=history, parents=parents,
        metrics={"top1": run.top1, "top5": run.top5, "samples": run.samples, "spikes_per_sample": run.spikes_per_sample,
                 "mean_firing_rate": run.mean_firing_rate,
                 "teacher_top1": t_art.manifest.metrics.get("top1"), **best_metrics(history)},
    )
    if world().main:
        artifacts.save(out, manifest, s_model.body.state_dict())
        finish_checkpoint(out)
    barrier()
    return StageResult(out, manifest)
