"""The persisted schema: every model an artifact's manifest is made of, in one place at the bottom of the
import graph: it needs only pydantic (no torch; the surrogates' names and default alphas are in
`enofctl.schema.surrogates`).

    Manifest                    schema_version, kind, stage, created, config, history, tensors_sha256
    ├── model: ModelSpec        the timm network to rebuild, its input and normalization
    │   └── act: ActSpec        the activation it was trained with
    ├── data: DataRef
    │   ├── frames: FrameSpec   event datasets only
    │   └── train_subset: TrainSubset   --limit-train
    ├── spiking: SpikingSpec    students only
    │   └── neuron: NeuronSpec
    ├── metrics: TeacherMetrics | StudentMetrics        by kind
    ├── parents: [ParentRef]
    ├── calibration: ChannelCalibration | Calibration   convert --calibrate
    └── versions: Versions

The results the commands report are here too, each file with its schema version: `report` (report.json of
`eval`: EvalResult, EvalRun, LayerOps, ...), `ablation` (ablation.json of `ablate`), `export` (`export`'s
and `--verify`'s JSON).

Every manifest model is frozen and forbids unknown fields. Older manifests are upgraded by ``upgrade`` (one step per
version in ``MIGRATIONS``) before they are validated.
"""

from enofctl.schema.acts import ActSpec
from enofctl.schema.calibration import CalibratedChannels, CalibratedLayer, Calibration, ChannelCalibration
from enofctl.schema.frames import FrameSpec
from enofctl.schema.manifest import (
    MIGRATIONS,
    SCHEMA_VERSION,
    DataRef,
    Manifest,
    ModelSpec,
    ParentRef,
    TrainSubset,
    Versions,
    current_versions,
    upgrade,
)
from enofctl.schema.metrics import METRICS, StudentMetrics, TeacherMetrics
from enofctl.schema.spiking import NeuronSpec, SpikingSpec

__all__ = [
    "METRICS", "MIGRATIONS", "SCHEMA_VERSION", "ActSpec", "CalibratedChannels", "CalibratedLayer", "Calibration",
    "ChannelCalibration", "DataRef", "FrameSpec", "Manifest", "ModelSpec", "NeuronSpec", "ParentRef", "SpikingSpec",
    "StudentMetrics", "TeacherMetrics", "TrainSubset", "Versions", "current_versions", "upgrade",
]
