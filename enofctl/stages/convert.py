"""Stage 2: the spiking student skeleton, converted from a teacher artifact (same weights)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from enofctl import artifacts
from enofctl.artifacts import Artifact, Manifest
from enofctl.spiking import NeuronSpec, SpikingNet, SpikingSpec, make_spiking
from enofctl.stages.teacher import StageResult


class ConvertConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    T: int = Field(4, ge=1, le=1024)
    neuron: NeuronSpec = Field(default_factory=NeuronSpec)
    repact: bool = True

    def spiking_spec(self) -> SpikingSpec:
        return SpikingSpec(T=self.T, neuron=self.neuron, repact=self.repact)


def convert_teacher(teacher: Artifact, cfg: ConvertConfig) -> tuple[SpikingNet, Manifest]:
    """The spiking student of a loaded teacher and its manifest (not yet written)."""
    spec = cfg.spiking_spec()
    student = make_spiking(teacher.build_ann(), spec, teacher.manifest.model.input_size)
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
