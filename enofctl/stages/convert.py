"""Stage 2: the spiking student, converted from a teacher artifact.

``method="surrogate"`` (default): the skeleton for surrogate-gradient training (`distill`): same weights,
activations -> LIF, RepAct. ``method="cq"``: near-lossless conversion of a CQ/QCFS-trained teacher to an
integrate-and-fire network, usable as is (no training), with optional n-bit weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from enofctl import artifacts
from enofctl.artifacts import Artifact, Manifest
from enofctl.errors import UsageError
from enofctl.spiking import NeuronSpec, SpikingNet, SpikingSpec, make_spiking
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

    def spiking_spec(self) -> SpikingSpec:
        if self.method == "cq":
            neuron = CQ_NEURON.model_copy(update={"surrogate": self.neuron.surrogate, "alpha": self.neuron.alpha})
            return SpikingSpec(T=self.T, neuron=neuron, repact=False, method="cq",
                               spiking_pool=self.spiking_pool, weight_bits=self.weight_bits)
        return SpikingSpec(T=self.T, neuron=self.neuron, repact=self.repact)


def convert_teacher(teacher: Artifact, cfg: ConvertConfig) -> tuple[SpikingNet, Manifest]:
    """The spiking student of a loaded teacher and its manifest (not yet written)."""
    if cfg.method == "cq" and teacher.manifest.model.act.kind == "relu":
        raise UsageError(f"--method cq needs a teacher trained with --act cq (or qcfs/clamp); {teacher.path} "
                         "uses ReLU")
    if cfg.method == "surrogate" and cfg.weight_bits is not None:
        raise UsageError("--weight-bits applies to --method cq")
    spec = cfg.spiking_spec()
    student = make_spiking(teacher.build_ann(), spec, teacher.manifest.model.input_size)
    if cfg.weight_bits is not None:
        from enofctl.spiking.cq import quantize_weights

        quantize_weights(student.body, cfg.weight_bits, cfg.weight_norm)
    manifest = Manifest(
        kind="student", stage="convert", model=teacher.manifest.model, data=teacher.manifest.data,
        spiking=spec, config=cfg.model_dump(), parents=[teacher.parent_ref()],
    )
    return student, manifest


def convert(teacher: str | Path, cfg: ConvertConfig, out: str | Path) -> StageResult:
    out = artifacts.check_output_path(out)
    student, manifest = convert_teacher(artifacts.load(teacher, expect="teacher"), cfg)
    artifacts.save(out, manifest, student.body.state_dict())
    return StageResult(out, manifest)
