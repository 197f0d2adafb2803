"""Stage 3: surrogate-gradient BPTT training of the spiking student with ``CE + lambda * L_AF`` (EnOF-SNN).

The teacher is frozen. The student's output feature f_s goes through the teacher's classifier
(``get_classifier()``) and is matched to the teacher's logits with a temperature-softened KL; the student
trains, and is evaluated with, its own classifier.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn

from enofctl import artifacts
from enofctl.artifacts import Artifact
from enofctl.config.distill import RECIPES as RECIPES  # the config, defined without torch (re-exported)
from enofctl.config.distill import DistillConfig
from enofctl.config.distill import with_recipe as with_recipe
from enofctl.config.evaluate import EvalConfig
from enofctl.data import Data, data_at, dataset_info, load_dataset, recorded_image_size
from enofctl.errors import UsageError
from enofctl.losses import DistillWeights, StudentOutput, TeacherOutput, distill_loss
from enofctl.models import feature_dim
from enofctl.schema import DataRef, Manifest, ParentRef, StudentMetrics
from enofctl.spiking import SpikingNet, ann_forward_with_feature
from enofctl.spiking.convert import activation_order
from enofctl.stages.context import RunContext
from enofctl.stages.convert import SurrogateConvertConfig, convert_teacher
from enofctl.stages.inputs import DistillInputs, FrozenTeacher
from enofctl.stages.loop import RunIO, Trainee, check_batches, fit
from enofctl.stages.measure import measure
from enofctl.stages.progress import ProgressFn
from enofctl.stages.results import StageResult, Trained, best_metrics, save_trained
from enofctl.stages.train_state import checkpoint_path


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


class DistillStep:
    """The student's training step: `distill_loss` on one batch, each term logged as a detached 0-d tensor (read
    back by the loop once per log interval, not every step)."""

    def __init__(self, weights: DistillWeights, teacher: nn.Module, rates: dict[str, torch.Tensor]):
        self.weights, self.teacher, self.rates = weights, teacher, rates  # rates: filled by forward hooks
        self.head = teacher.get_classifier()

    def __call__(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, f_s = net(x, with_feature=True)
        teacher = None
        if self.weights.needs_teacher:
            with torch.no_grad():
                z_t, _ = ann_forward_with_feature(self.teacher, x)
            teacher = TeacherOutput(z_t, self.head)
        loss, terms = distill_loss(StudentOutput(logits, f_s, self.rates), y, teacher, self.weights)
        return loss, {k: v.detach() for k, v in terms.items()}


def _start(cfg: DistillConfig, src: DistillInputs, progress: ProgressFn | None = None,
           device: torch.device | None = None) -> tuple[SpikingNet, Manifest, list[ParentRef]]:
    """The student to train, its manifest so far and the parents of the result."""
    t_art = src.teacher.artifact
    if src.student is not None and cfg.init == "scratch":
        raise UsageError("--init scratch builds a fresh student: not with --student (which is trained as it is)")
    if src.student is None:
        scratch = cfg.init == "scratch"
        conv = SurrogateConvertConfig(T=cfg.T or default_T(t_art.manifest), neuron=cfg.neuron, repact=cfg.repact,
                                      calibrate=0 if scratch else cfg.calibrate, reconstruct=cfg.reconstruct,
                                      seed=cfg.seed, data_dir=cfg.data_dir, device=cfg.device)
        key = conv.model_dump_json() + f"|fresh={scratch}"
        if src.starts is not None and key in src.starts:  # the same conversion done before: a copy of it
            s_model, s_manifest = src.starts[key]
            return copy.deepcopy(s_model), s_manifest, [t_art.parent_ref()]
        s_model, s_manifest = convert_teacher(t_art, conv, progress, fresh=scratch, device=device)
        if src.starts is not None:
            src.starts[key] = (copy.deepcopy(s_model), s_manifest)
        return s_model, s_manifest, [t_art.parent_ref()]
    s_model = src.student.build()
    if cfg.T:
        s_model.set_T(cfg.T)
    return s_model, src.student.manifest, [t_art.parent_ref(), src.student.parent_ref()]


def default_T(teacher: Manifest) -> int:
    """A converted student's T when none is given: 4, or for event data the teacher's frames per sample."""
    return teacher.data.frames.T if teacher.data.frames is not None else 4


def _check_layer_names(cfg: DistillConfig, layers: list[str]) -> None:
    unknown = set(cfg.act_reg_weights) - set(layers)
    if unknown:
        raise UsageError(f"--act-reg-weights: no spiking layer named {sorted(unknown)[0]!r}; layers: "
                         f"{', '.join(layers)}")


def _layers_to_be(cfg: DistillConfig, src: DistillInputs) -> list[str]:
    """The spiking layers of the student the teacher converts to (its activations but, with RepAct, the last),
    known before any calibration: a misnamed --act-reg-weight fails at once."""
    order = activation_order(src.teacher.model, tuple(src.teacher.artifact.manifest.model.input_size))
    return order[:-1] if cfg.repact else order


def _rate_hooks(student: SpikingNet, cfg: DistillConfig) -> tuple[dict[str, torch.Tensor], list]:
    """Forward hooks that record each spiking layer's mean rate for the activity regularizer (none when off)."""
    _check_layer_names(cfg, list(student.neurons()))
    rates: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: rates.__setitem__(n, o.mean()))
             for n, m in student.neurons().items()] if cfg.act_reg else []
    return rates, hooks


def distill_student(cfg: DistillConfig, src: DistillInputs, io: RunIO | None = None,
                    run: RunContext | None = None) -> Trained:
    """The core of `distill`: the student trained against the frozen teacher, with its manifest; nothing is
    read or written here but the checkpoint ``io`` names. ``run``: the run's context (built here when not
    given)."""
    run = run or RunContext.build(cfg, src.data.info)
    device = run.device
    check_batches(src.teacher.model, len(src.data.train), cfg, run.ranks.size)  # before calibration
    if cfg.act_reg_weights and src.student is None:
        _check_layer_names(cfg, _layers_to_be(cfg, src))
    s_model, s_manifest, parents = _start(cfg, src, run.ranks.main_only(io.progress if io else None), device)
    t_model = src.teacher.model.to(device)
    check_pair(src.teacher.artifact, s_manifest, s_model, t_model)
    spec = s_manifest.model
    if (src.data.info.num_classes, src.data.info.in_chans) != (spec.num_classes, spec.in_chans):
        raise UsageError(f"{src.data.info.name} does not fit the student ({spec.num_classes} classes, "
                         f"{spec.in_chans} channels)")
    # event data binned at the student's T (the same data for images), split, cut to --limit-train (one fixed
    # subset for every epoch) and placed once, for training and the final test
    run = run.placed(data_at(src.data, s_model.T))
    data = run.data
    s_model.to(device)
    rates, hooks = _rate_hooks(s_model, cfg)
    step = DistillStep(DistillWeights.of(cfg), t_model, rates)
    try:
        history = fit(Trainee("distill", s_model, step, spec.mean, spec.std, frozen_norm=cfg.bn == "frozen"), run,
                      io)
    finally:
        for h in hooks:
            h.remove()
    # every rank: the whole split (or its first limit_test samples)
    final = measure(s_model, data.test, device, spec, EvalConfig(limit=cfg.limit_test, speed_batches=0))
    manifest = Manifest(
        kind="student", stage="distill", model=spec, data=_data_ref(s_manifest.data, data), spiking=s_model.spec,
        config=cfg.model_dump(), history=history, parents=parents, calibration=s_manifest.calibration,
        metrics=StudentMetrics(top1=final.top1, top5=final.top5, samples=final.samples,
                               spikes_per_sample=final.spikes_per_sample, mean_firing_rate=final.mean_firing_rate,
                               teacher_top1=src.teacher.artifact.manifest.metrics.top1, **best_metrics(history)),
    )
    return Trained(s_model, manifest)


def _inputs(teacher: Artifact, student: Artifact | None) -> dict[str, str]:
    """The input files' sha256, which a checkpoint records so --resume refuses other inputs."""
    return {"teacher": teacher.sha256, **({"student": student.sha256} if student is not None else {})}


def _data_ref(ref: DataRef, data: Data) -> DataRef:
    """The student's data record: its --limit-train subset and, for event data, the frames it was trained on."""
    ref = ref.model_copy(update={"train_subset": data.train_subset})
    return ref if data.frames is None else ref.model_copy(update={"frames": data.frames})


def distill(cfg: DistillConfig, teacher: str | Path, out: str | Path, student: str | Path | None = None,
            resume: bool = False, progress: ProgressFn | None = None) -> StageResult:
    """`distill`: read the teacher (and the student), train (`distill_student`), write ``out``."""
    out = artifacts.check_output_path(out, inputs=(teacher, student), checkpoint=True)
    t_art = artifacts.load(teacher, expect="teacher")
    s_art = artifacts.load(student, expect="student") if student is not None else None
    ref = (s_art or t_art).manifest.data
    run = RunContext.build(cfg, dataset_info(ref.dataset))  # the recipe checked before any data is read
    frames = ref.frames
    if frames is not None:  # event data: frames binned at the student's T
        T = cfg.T or (s_art.manifest.spiking.T if s_art is not None else default_T(t_art.manifest))
        frames = frames.model_copy(update={"T": T})
    data = load_dataset(ref.dataset, cfg.data_dir or ref.data_dir, cfg.download, frames=frames,
                        image_size=recorded_image_size(ref.dataset, t_art.manifest.model.input_size))
    trained = distill_student(cfg, DistillInputs(FrozenTeacher.of(t_art), data, s_art),
                              RunIO(checkpoint_path(out), resume, progress, _inputs(t_art, s_art)), run)
    return save_trained(out, trained, run.ranks)
