"""Stage 3: surrogate-gradient BPTT training of the spiking student with ``CE + lambda * L_AF`` (EnOF-SNN).

The teacher is frozen. The student's output feature f_s goes through the teacher's classifier
(``get_classifier()``) and is matched to the teacher's logits with a temperature-softened KL; the student
trains, and is evaluated with, its own classifier.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import Field

from enofctl import artifacts
from enofctl.artifacts import Artifact, Manifest
from enofctl.data import load_dataset
from enofctl.distributed import barrier, world
from enofctl.errors import UsageError
from enofctl.losses import laf_loss
from enofctl.models import feature_dim
from enofctl.spiking import NeuronSpec, SpikingNet, ann_forward_with_feature
from enofctl.stages.common import ProgressFn, TrainConfig, finish_checkpoint, fit, resolve_device
from enofctl.stages.convert import ConvertConfig, convert_teacher
from enofctl.stages.evaluate import measure
from enofctl.stages.teacher import StageResult


class DistillConfig(TrainConfig):
    epochs: int = Field(30, ge=1)
    lr: float = Field(0.05, gt=0)
    T: int | None = Field(None, ge=1, le=1024, description="time steps; None = the student's T (4 if converted)")
    laf_lambda: float = Field(0.1, ge=0, description="weight of L_AF (authors' code: 0.1; paper unconfirmed)")
    laf_tau: float = Field(20.0, gt=0, description="L_AF temperature (authors' code: 20; paper unconfirmed)")
    neuron: NeuronSpec = Field(default_factory=NeuronSpec, description="used when converting the teacher")
    repact: bool = Field(True, description="used when converting the teacher")
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
        conv = ConvertConfig(T=cfg.T or 4, neuron=cfg.neuron, repact=cfg.repact)
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
    t_model = t_art.build().to(device)
    check_pair(t_art, s_manifest, s_model, t_model)
    for p in t_model.parameters():
        p.requires_grad_(False)
    t_head = t_model.get_classifier()
    spec = s_manifest.model
    data = load_dataset(s_manifest.data.dataset, cfg.data_dir or s_manifest.data.data_dir)
    s_model.to(device)

    def step_loss(net, x, y):
        logits, f_s = net(x, with_feature=True)
        ce = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        if cfg.laf_lambda == 0:
            return ce, {"ce": ce.item()}
        with torch.no_grad():
            z_t, _ = ann_forward_with_feature(t_model, x)
        laf = laf_loss(f_s, z_t, t_head, cfg.laf_tau)
        return ce + cfg.laf_lambda * laf, {"ce": ce.item(), "laf": laf.item()}

    history = fit("distill", s_model, step_loss, data, cfg, device, spec.mean, spec.std, out, resume, progress)
    run = measure(s_model, data.test, device, spec.mean, spec.std, spec.input_size)  # every rank: whole split
    manifest = Manifest(
        kind="student", stage="distill", model=spec, data=s_manifest.data, spiking=s_model.spec,
        config=cfg.model_dump(), history=history, parents=parents,
        metrics={"top1": run.top1, "top5": run.top5, "spikes_per_sample": run.spikes_per_sample,
                 "mean_firing_rate": run.mean_firing_rate,
                 "teacher_top1": t_art.manifest.metrics.get("top1")},
    )
    if world().main:
        artifacts.save(out, manifest, s_model.body.state_dict())
        finish_checkpoint(out)
    barrier()
    return StageResult(out, manifest)
