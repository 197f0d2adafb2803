"""What a training core is given, loaded: the frozen teacher and the data a student is distilled from
(`distill_student`; `ablate` trains every cell from the same ones)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch.nn as nn

from enofctl.artifacts import Artifact
from enofctl.data import Data

if TYPE_CHECKING:
    from enofctl.schema import Manifest
    from enofctl.spiking import SpikingNet


@dataclass
class FrozenTeacher:
    """A loaded teacher artifact and its network, built once: frozen (no grad) and in eval mode."""

    artifact: Artifact
    model: nn.Module

    @classmethod
    def of(cls, artifact: Artifact) -> FrozenTeacher:
        model = artifact.build()
        for p in model.parameters():
            p.requires_grad_(False)
        return cls(artifact, model)


@dataclass
class DistillInputs:
    """What `distill_student` trains from: the teacher, the data (not yet split) and the student to start
    from (None: the teacher converted with the config's neuron and RepAct)."""

    teacher: FrozenTeacher
    data: Data
    student: Artifact | None = None
    # converted starts by their conversion config, kept unmodified (None: convert every time). `ablate` gives one,
    # so that cells differing only in what they are trained with (loss terms) convert the teacher once per seed
    starts: dict[str, tuple[SpikingNet, Manifest]] | None = None
