"""Stage 2: the spiking student, converted from a teacher artifact.

``method="surrogate"`` (default): the skeleton for surrogate-gradient training (`distill`): same weights,
activations -> LIF, RepAct. ``method="cq"``: near-lossless conversion of a CQ/QCFS-trained teacher to an
integrate-and-fire network, usable as is (no training), with optional n-bit weights and optional data-driven
steps on a few training batches: layer-wise bias calibration (``calibrate``) and data-based thresholds for
ReLU teachers (``norm_percentile``).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from enofctl import artifacts
from enofctl.artifacts import Artifact
from enofctl.config.convert import CQ_NEURON as CQ_NEURON  # the configs, defined without torch (re-exported)
from enofctl.config.convert import ConvertConfig as ConvertConfig
from enofctl.config.convert import CQConvertConfig, SurrogateConvertConfig, _CalibrationData
from enofctl.config.convert import convert_config as convert_config
from enofctl.errors import ArtifactError, CalibrationError, UsageError
from enofctl.schema import Calibration, Manifest, StudentMetrics
from enofctl.spiking import SpikingNet, make_spiking
from enofctl.stages.context import resolve_device
from enofctl.stages.progress import ProgressEvent, ProgressFn, StageWarning
from enofctl.stages.results import StageResult


def _check(teacher: Artifact, cfg: SurrogateConvertConfig | CQConvertConfig) -> None:
    if cfg.method != "cq":
        return
    if teacher.manifest.data.frames is not None:
        raise UsageError(f"--method cq converts image teachers (a constant input current); {teacher.path} reads "
                         "event frames: use the default --method surrogate")
    if cfg.norm_percentile is not None and not cfg.calibrate:
        raise UsageError("--norm-percentile needs calibration data: give --calibrate N (batches of training data)")
    if teacher.manifest.model.act.kind == "relu" and cfg.norm_percentile is None:
        raise UsageError(f"--method cq needs a teacher trained with --act cq (or qcfs/clamp); {teacher.path} "
                         "uses ReLU (or give --norm-percentile 99.9 --calibrate N for data-based thresholds)")


def _calibration_batches(teacher: Artifact, cfg: _CalibrationData, n: int,
                         device: torch.device) -> list[torch.Tensor]:
    """``n`` normalized batches of the teacher's training split, drawn by a seeded shuffle."""
    from enofctl.data import load_dataset, normalize, recorded_image_size

    m = teacher.manifest
    frames = m.data.frames.model_copy(update={"T": cfg.T}) if m.data.frames else None  # event data: T frames
    data = load_dataset(m.data.dataset, cfg.data_dir or m.data.data_dir, frames=frames,
                        image_size=recorded_image_size(m.data.dataset, m.model.input_size))
    gen = torch.Generator().manual_seed(cfg.seed)
    limit = n * cfg.batch_size
    return [normalize(x.to(device), m.model.mean, m.model.std)
            for x, _ in data.train.batches(cfg.batch_size, shuffle=True, generator=gen, limit=limit)]


def _on_step(progress: ProgressFn | None, stage: str = "calibrate"):
    def on_step(done: int, total: int) -> None:
        if progress:
            progress(ProgressEvent(stage, 1, 1, done, total))

    return on_step


def _calibrate_cq(student: SpikingNet, ann, batches, teacher: Artifact, cfg: CQConvertConfig,
                  progress: ProgressFn | None) -> Calibration:
    """CQ's data-driven steps, in place: thresholds (``norm_percentile``), then bias calibration; returns
    the record of both."""
    from enofctl.spiking.cq import calibrate_bias, normalize_thresholds

    normalized = {}
    if cfg.norm_percentile is not None:
        normalized = normalize_thresholds(student, ann, batches, cfg.norm_percentile, cfg.seed)
    record = calibrate_bias(student, ann, batches, input_size=teacher.manifest.model.input_size,
                            progress=_on_step(progress))
    layers = [layer.model_copy(update={"threshold_from": "percentile"}) if layer.name in normalized else layer
              for layer in record.layers]
    return record.model_copy(update={"norm_percentile": cfg.norm_percentile, "layers": layers})


def _calibrate(student: SpikingNet, ann: nn.Module, teacher: Artifact,
               cfg: SurrogateConvertConfig | CQConvertConfig, progress: ProgressFn | None, device: torch.device):
    """Run the method's calibration on ``cfg.calibrate`` batches on ``device``; returns its record."""
    from enofctl.spiking.calibrate import calibrate_student

    batches = _calibration_batches(teacher, cfg, cfg.calibrate, device)
    ann.to(device).eval()
    student.to(device)
    try:
        if cfg.method == "cq":
            return _calibrate_cq(student, ann, batches, teacher, cfg, progress)
        record = calibrate_student(student, ann, batches, percentile=cfg.percentile, readout_ridge=cfg.readout_ridge,
                                   bn_reestimate=cfg.bn_reestimate, progress=_on_step(progress))
        if not all(torch.isfinite(b).all() for b in student.body.buffers()):
            raise CalibrationError("calibration produced a non-finite threshold or amplitude; nothing was written "
                                   "(try more --calibrate batches)")
        if cfg.reconstruct:
            record = _reconstruct(student, ann, batches, cfg, record, progress)
        if cfg.fold:
            record = _fold(student, record, batches)
    finally:
        student.to("cpu")
        ann.to("cpu")
    return record


def _reconstruct(student: SpikingNet, ann: nn.Module, batches: list[torch.Tensor], cfg: SurrogateConvertConfig,
                 record, progress: ProgressFn | None):
    """``cfg.reconstruct`` steps (`spiking.calibrate.reconstruct`), kept when the student then agrees with its
    teacher on at least as many of the first calibration batches as before, else undone (the record says
    which)."""
    import copy

    from enofctl.spiking.calibrate import AGREEMENT_BATCHES, agreement, reconstruct

    probe = batches[:AGREEMENT_BATCHES]
    saved = copy.deepcopy(student.body.state_dict())
    before = agreement(student, ann, probe)
    first, last, secs = reconstruct(student, ann, batches, cfg.reconstruct, cfg.reconstruct_lr,
                                    progress=_on_step(progress, "reconstruct"), batch_size=cfg.reconstruct_batch)
    after = agreement(student, ann, probe)
    kept = after >= before
    if not kept:
        student.body.load_state_dict(saved)
    return record.model_copy(update={
        "reconstruct_steps": cfg.reconstruct, "reconstruct_lr": cfg.reconstruct_lr, "reconstruct_loss": (first, last),
        "reconstruct_seconds": secs, "reconstruct_agreement": (before, after), "reconstruct_kept": kept,
        "agreement_after": after if kept else before})


def _fold(student: SpikingNet, record, batches: list[torch.Tensor]):
    """The calibrated ``student`` folded into the spec's neuron (``spiking.fold``), in place, checked spike for
    spike against the unfolded one on the first calibration batches; the record says what was folded. A
    network the fold cannot trace or scale keeps its per-channel buffers (a warning says why)."""
    import copy
    import warnings

    from enofctl.spiking.fold import FoldUnsupported, check_folded, fold_calibration

    before = copy.deepcopy(student)
    try:
        placed = fold_calibration(student)
    except FoldUnsupported as e:
        student.body = before.body  # as calibrated: the fold may have changed layers before it stopped
        warnings.warn(f"the calibration stays in per-channel buffers: {e}", StageWarning, stacklevel=3)
        return record
    student.spec = student.spec.model_copy(update={"scaling": "none", "shortcut_scales": placed})
    before.eval()
    student.eval()
    gap = check_folded(before, student, batches[:2])
    scales = [m.scale for name, m in student.body.named_modules() if name in placed]
    span = (float(min(s.min() for s in scales)), float(max(s.max() for s in scales))) if scales else None
    return record.model_copy(update={"folded": True, "shortcut_scale_range": span, "fold_logit_error": gap})


def convert_teacher(teacher: Artifact, cfg: SurrogateConvertConfig | CQConvertConfig,
                    progress: ProgressFn | None = None, fresh: bool = False,
                    device: torch.device | None = None) -> tuple[SpikingNet, Manifest]:
    """The spiking student of a loaded teacher and its manifest (not yet written). ``fresh``: the teacher's
    architecture with freshly initialized weights and BatchNorm (drawn with ``cfg.seed``) instead of its
    weights (`distill --init scratch`; surrogate students without calibration only). ``device``: where the
    calibration computes (default: ``cfg.device`` resolved)."""
    _check(teacher, cfg)
    if fresh and (cfg.method != "surrogate" or cfg.calibrate):
        raise UsageError("a freshly initialized student is a surrogate student without calibration")
    spec, data_ref = cfg.spiking_spec(), teacher.manifest.data
    if data_ref.frames is not None:  # event data: frame t at step t, the frames binned at the student's T
        spec = spec.model_copy(update={"encoding": "event"})
        data_ref = data_ref.model_copy(update={"frames": data_ref.frames.model_copy(update={"T": cfg.T})})
    bad = next((k for k, v in teacher.tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise ArtifactError(f"{teacher.path}: tensor {bad!r} holds non-finite values; a student of it cannot compute")
    if fresh:
        with torch.random.fork_rng(devices=[]):  # its own draws: the run's random state stays as it was
            torch.manual_seed(cfg.seed)
            ann = teacher.ann_skeleton()
    else:
        ann = teacher.build_ann()
    student = make_spiking(ann, spec, teacher.manifest.model.input_size)
    if cfg.method == "cq" and cfg.weight_bits is not None:
        from enofctl.spiking.cq import quantize_weights

        quantize_weights(student.body, cfg.weight_bits, cfg.weight_norm)
    record = None
    if cfg.calibrate:
        record = _calibrate(student, ann, teacher, cfg, progress, device or resolve_device(cfg.device))
    spec = student.spec  # a folded calibration changes the scaling and adds shortcut scales
    manifest = Manifest(
        kind="student", stage="convert", model=teacher.manifest.model, data=data_ref,
        spiking=spec, config=cfg.model_dump(), parents=[teacher.parent_ref()], calibration=record,
    )
    return student, manifest


TEST_SAMPLES = 1024  # convert measures what it wrote on at most this many test images (when it reads data)


def measured(student: SpikingNet, teacher: Artifact, manifest: Manifest,
             cfg: SurrogateConvertConfig | CQConvertConfig, device: torch.device | None = None) -> Manifest:
    """``manifest`` with the student's accuracy before any training in its metrics: top-1/top-5 on the first
    ``TEST_SAMPLES`` test images at its own T (the data the calibration read is there already), on ``device``
    (default: ``cfg.device`` resolved)."""
    from enofctl.data import load_dataset, recorded_image_size
    from enofctl.stages.batches import accuracy

    m = teacher.manifest
    data = load_dataset(m.data.dataset, cfg.data_dir or m.data.data_dir, frames=manifest.data.frames,
                        image_size=recorded_image_size(m.data.dataset, m.model.input_size))
    device = device or resolve_device(cfg.device)
    try:
        acc = accuracy(student.to(device), data.test, device, m.model.mean, m.model.std, batch_size=cfg.batch_size,
                       limit=TEST_SAMPLES)
    finally:
        student.to("cpu")
    metrics = StudentMetrics(top1=acc["top1"], top5=acc["top5"], samples=int(acc["samples"]),
                             teacher_top1=m.metrics.top1)
    return manifest.model_copy(update={"metrics": metrics})


def convert(teacher: str | Path, cfg: SurrogateConvertConfig | CQConvertConfig, out: str | Path,
            progress: ProgressFn | None = None) -> StageResult:
    """`convert`: the student of ``teacher``, written to ``out``; calibrated (data read), with its accuracy
    before training in the manifest's metrics (`measured`)."""
    out = artifacts.check_output_path(out, inputs=(teacher,))
    t_art = artifacts.load(teacher, expect="teacher")
    device = resolve_device(cfg.device) if cfg.calibrate else None  # once: calibration and the measurement
    student, manifest = convert_teacher(t_art, cfg, progress, device=device)
    if cfg.calibrate:
        manifest = measured(student, t_art, manifest, cfg, device)
    saved = artifacts.save(out, manifest, student.body.state_dict())
    return StageResult(saved.path, saved.manifest)
