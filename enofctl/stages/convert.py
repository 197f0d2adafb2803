"""Stage 2: the spiking student, converted from a teacher artifact.

``method="surrogate"`` (default): the skeleton for surrogate-gradient training (`distill`): same weights,
activations -> LIF, RepAct. ``method="cq"``: near-lossless conversion of a CQ/QCFS-trained teacher to an
integrate-and-fire network, usable as is (no training), with optional n-bit weights and optional data-driven
steps on a few training batches: layer-wise bias calibration (``calibrate``) and data-based thresholds for
ReLU teachers (``norm_percentile``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from enofctl import artifacts
from enofctl.artifacts import Artifact, Manifest
from enofctl.errors import UsageError
from enofctl.spiking import NeuronSpec, SpikingNet, SpikingSpec, make_spiking
from enofctl.stages.common import Progress, ProgressFn
from enofctl.stages.teacher import StageResult

# CQ conversion's neuron: integrate-and-fire, reset by subtraction, membrane starting at half the threshold
# (the threshold itself is per layer: the activation's clip).
CQ_NEURON = NeuronSpec(kind="if", decay=1.0, v_th=1.0, reset="soft", v_init=0.5)


class ConvertConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    T: int = Field(4, ge=1, le=1024)
    method: Literal["surrogate", "cq"] = "surrogate"
    neuron: NeuronSpec = Field(default_factory=NeuronSpec, description="surrogate method's neuron")
    repact: bool = Field(True, description="surrogate method: the last activation stays ReLU")
    weight_bits: int | None = Field(None, ge=2, le=32, description="cq: round weights to n-bit fixed point")
    weight_norm: bool = Field(True, description="cq + weight_bits: per-layer max-normalized grid")
    spiking_pool: bool = Field(False, description="cq: an IF neuron after each average pool")
    calibrate: int = Field(0, ge=0, le=100_000, description="cq: batches of training data for layer-wise bias "
                           "calibration at T (0 = off: the conversion needs no data)")
    norm_percentile: float | None = Field(None, gt=0, le=100, description="cq: thresholds of unbounded (ReLU) "
                                          "activations = this percentile of the ANN's activations on the "
                                          "calibration data; bounded ones keep their clip")
    batch_size: int = Field(128, ge=1, description="calibration batch size")
    seed: int = Field(0, description="which training images calibrate (a seeded shuffle)")
    data_dir: str | None = Field(None, description="calibration data [default: the teacher's]")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where calibration computes")

    def spiking_spec(self) -> SpikingSpec:
        if self.method == "cq":
            neuron = CQ_NEURON.model_copy(update={"surrogate": self.neuron.surrogate, "alpha": self.neuron.alpha})
            return SpikingSpec(T=self.T, neuron=neuron, repact=False, method="cq",
                               spiking_pool=self.spiking_pool, weight_bits=self.weight_bits)
        return SpikingSpec(T=self.T, neuron=self.neuron, repact=self.repact)


def _check(teacher: Artifact, cfg: ConvertConfig) -> None:
    if cfg.method == "surrogate":
        for name, value in (("--weight-bits", cfg.weight_bits), ("--calibrate", cfg.calibrate or None),
                            ("--norm-percentile", cfg.norm_percentile)):
            if value is not None:
                raise UsageError(f"{name} applies to --method cq")
        return
    if cfg.norm_percentile is not None and not cfg.calibrate:
        raise UsageError("--norm-percentile needs calibration data: give --calibrate N (batches of training data)")
    if teacher.manifest.model.act.kind == "relu" and cfg.norm_percentile is None:
        raise UsageError(f"--method cq needs a teacher trained with --act cq (or qcfs/clamp); {teacher.path} "
                         "uses ReLU (or give --norm-percentile 99.9 --calibrate N for data-based thresholds)")


def _calibration_batches(teacher: Artifact, cfg: ConvertConfig, device: torch.device) -> list[torch.Tensor]:
    """``cfg.calibrate`` normalized batches of the teacher's training split, drawn by a seeded shuffle."""
    from enofctl.data import load_dataset, normalize

    m = teacher.manifest
    data = load_dataset(m.data.dataset, cfg.data_dir or m.data.data_dir)
    gen = torch.Generator().manual_seed(cfg.seed)
    limit = cfg.calibrate * cfg.batch_size
    return [normalize(x.to(device), m.model.mean, m.model.std)
            for x, _ in data.train.batches(cfg.batch_size, shuffle=True, generator=gen, limit=limit)]


def _calibrate(student: SpikingNet, teacher: Artifact, cfg: ConvertConfig, progress: ProgressFn | None):
    """The data-driven steps, in place: thresholds (``norm_percentile``), then bias calibration."""
    from enofctl.spiking.cq import calibrate_bias, normalize_thresholds
    from enofctl.stages.common import resolve_device

    device = resolve_device(cfg.device)
    batches = _calibration_batches(teacher, cfg, device)
    ann = teacher.build_ann().to(device).eval()
    student.to(device)
    try:
        normalized = {}
        if cfg.norm_percentile is not None:
            normalized = normalize_thresholds(student, ann, batches, cfg.norm_percentile, cfg.seed)

        def on_step(done: int, total: int) -> None:
            if progress:
                progress(Progress("calibrate", 1, 1, done, total))

        record = calibrate_bias(student, ann, batches, input_size=teacher.manifest.model.input_size,
                                progress=on_step)
    finally:
        student.to("cpu")
    record.norm_percentile = cfg.norm_percentile
    for layer in record.layers:
        if layer.name in normalized:
            layer.threshold_from = "percentile"
    return record


def convert_teacher(teacher: Artifact, cfg: ConvertConfig,
                    progress: ProgressFn | None = None) -> tuple[SpikingNet, Manifest]:
    """The spiking student of a loaded teacher and its manifest (not yet written)."""
    _check(teacher, cfg)
    spec = cfg.spiking_spec()
    student = make_spiking(teacher.build_ann(), spec, teacher.manifest.model.input_size)
    if cfg.weight_bits is not None:
        from enofctl.spiking.cq import quantize_weights

        quantize_weights(student.body, cfg.weight_bits, cfg.weight_norm)
    record = _calibrate(student, teacher, cfg, progress) if cfg.calibrate else None
    manifest = Manifest(
        kind="student", stage="convert", model=teacher.manifest.model, data=teacher.manifest.data,
        spiking=spec, config=cfg.model_dump(), parents=[teacher.parent_ref()], calibration=record,
    )
    return student, manifest


def convert(teacher: str | Path, cfg: ConvertConfig, out: str | Path,
            progress: ProgressFn | None = None) -> StageResult:
    out = artifacts.check_output_path(out)
    student, manifest = convert_teacher(artifacts.load(teacher, expect="teacher"), cfg, progress)
    artifacts.save(out, manifest, student.body.state_dict())
    return StageResult(out, manifest)
