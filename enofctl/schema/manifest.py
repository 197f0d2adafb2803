"""The manifest of an artifact: what the weights are, where they came from and what they scored.

Strict and versioned: ``extra="forbid"`` everywhere, a literal ``schema_version``, and an explicit upgrade
path (``MIGRATIONS``) that turns the JSON of every older version into the current one before validation.
A change to anything persisted here bumps ``SCHEMA_VERSION`` and adds a step (tests/test_schema.py compares
the live JSON schema with ``tests/data/manifest_schema_v{SCHEMA_VERSION}.json``).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, ValidationInfo, ValidatorFunctionWrapHandler, field_validator, model_validator

from enofctl import __version__
from enofctl.errors import ArtifactError
from enofctl.schema.acts import ActSpec
from enofctl.schema.base import Frozen
from enofctl.schema.calibration import Calibration, ChannelCalibration
from enofctl.schema.frames import FrameSpec
from enofctl.schema.metrics import METRICS, StudentMetrics, TeacherMetrics
from enofctl.schema.spiking import SpikingSpec

SCHEMA_VERSION = 4

Kind = Literal["teacher", "student"]


class ModelSpec(Frozen):
    """Everything needed to rebuild the network with ``timm.create_model``."""

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    num_classes: int = Field(ge=1)
    in_chans: int = Field(ge=1)
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    act: ActSpec = Field(default_factory=ActSpec, description="activation the ANN uses (relu, clamp, cq, qcfs)")


class TrainSubset(Frozen):
    """``--limit-train N``: the one fixed, stratified subset of the training split that every epoch drew from."""

    size: int = Field(ge=1, description="N, the samples in the subset")
    of: int = Field(ge=1, description="the training split's samples it was drawn from")
    seed: int = Field(ge=0, description="the run's seed, which drew it")
    sha256: str = Field(pattern="^[0-9a-f]{64}$", description="of the sorted indices as little-endian int64")


class DataRef(Frozen):
    dataset: str
    data_dir: str | None = None
    classes: list[str]
    frames: FrameSpec | None = Field(None, description="event datasets: how each recording became T frames")
    train_subset: TrainSubset | None = Field(None, description="--limit-train: the fixed training subset (None: "
                                             "the whole training split)")


class ParentRef(Frozen):
    kind: Kind
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    path: str


class Versions(Frozen):
    enofctl: str
    torch: str
    timm: str


def current_versions() -> Versions:
    import timm
    import torch

    return Versions(enofctl=__version__, torch=torch.__version__, timm=timm.__version__)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _no_metrics(data: dict[str, Any]) -> TeacherMetrics | StudentMetrics:
    return METRICS.get(data.get("kind"), TeacherMetrics)()


class Manifest(Frozen):
    schema_version: Literal[4] = SCHEMA_VERSION
    kind: Kind
    stage: str = Field(description="what produced it: teacher-train, teacher-fetch, convert, distill")
    created: str = Field(default_factory=_now)
    model: ModelSpec
    data: DataRef
    spiking: SpikingSpec | None = None
    config: dict[str, Any] = Field(default_factory=dict, description="the stage's config")
    metrics: TeacherMetrics | StudentMetrics = Field(default_factory=_no_metrics, description="what the stage "
                                                     "measured: TeacherMetrics for a teacher, StudentMetrics for "
                                                     "a student")
    history: list[dict[str, float | int | None]] = Field(default_factory=list, description="per-epoch log")
    parents: list[ParentRef] = Field(default_factory=list)
    calibration: ChannelCalibration | Calibration | None = Field(None, description="convert --calibrate: what "
                                            "the channel fit (surrogate students) or the data-driven steps "
                                            "(bias calibration, data-based thresholds) did; None: none ran")
    versions: Versions = Field(default_factory=current_versions)
    tensors_sha256: str = Field("", pattern="^([0-9a-f]{64})?$")

    @field_validator("metrics", mode="wrap")
    @classmethod
    def _metrics_of_kind(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """A dict validates as the metrics model of the manifest's kind (not whichever of the two fits)."""
        model = METRICS.get(info.data.get("kind"))
        if model is not None and isinstance(value, dict):
            return model.model_validate(value)
        return handler(value)

    @model_validator(mode="after")
    def _consistent_kind(self) -> Manifest:
        if (self.kind == "student") != (self.spiking is not None):
            raise ValueError("a student manifest needs a `spiking` section and a teacher manifest must not have one")
        if type(self.metrics) is not METRICS[self.kind]:
            raise ValueError(f"a {self.kind} manifest carries {METRICS[self.kind].__name__}, "
                             f"not {type(self.metrics).__name__}")
        return self


# ----------------------------------------------------------------------------------------------------------
# upgrades from older schema versions


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 (enofctl 0.1.0) -> 2.

    - ``metrics``: a free dict of numbers -> the typed metrics of the kind (same keys; a key the kind does not
      have fails validation rather than being dropped);
    - ``spiking.scaling``: new, ``"none"`` (schema-1 students fire at ``neuron.v_th`` with spikes of 1);
    - ``calibration``: the CQ record is unchanged (the channel-fit record is new in 2).
    """
    raw = copy.deepcopy(raw)
    raw["schema_version"] = 2
    if isinstance(raw.get("spiking"), dict):
        raw["spiking"].setdefault("scaling", "none")
    return raw


def _v2_to_v3(raw: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 -> 3 (event-camera data).

    - ``data.frames``: new, absent (None) for image datasets, which is every schema-2 artifact;
    - ``spiking.encoding``: now ``"direct"`` or ``"event"``; schema-2 students are all ``"direct"``.
    """
    raw = copy.deepcopy(raw)
    raw["schema_version"] = 3
    if isinstance(raw.get("spiking"), dict):
        raw["spiking"].setdefault("encoding", "direct")
    return raw


def _v3_to_v4(raw: dict[str, Any]) -> dict[str, Any]:
    """Schema 3 -> 4.

    - ``spiking.shortcut_scales``: new, empty (schema-3 calibrated students keep their per-channel buffers,
      ``scaling="channel"``, and load as they were); ``calibration.folded``: new, False for schema-3 records;
    - ``spiking.neuron.surrogate``: ``"dspike"`` is new (schema-3 students use one of the older names);
    - ``data.train_subset``: new, absent (None): a schema-3 run with --limit-train drew a fresh random subset each
      epoch, which no record can describe.
    """
    raw = copy.deepcopy(raw)
    raw["schema_version"] = 4
    if isinstance(raw.get("spiking"), dict):
        raw["spiking"].setdefault("shortcut_scales", {})
    return raw


# {old_version: fn(manifest dict of old_version) -> manifest dict of old_version + 1}
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """A manifest dict of any version this enofctl can read, brought to ``SCHEMA_VERSION`` (not validated)."""
    v = raw.get("schema_version")
    if not isinstance(v, int):
        raise ArtifactError("invalid manifest: no integer schema_version")
    if v > SCHEMA_VERSION:
        raise ArtifactError(f"manifest schema {v} is newer than this enofctl understands ({SCHEMA_VERSION}); "
                            "upgrade enofctl")
    while v < SCHEMA_VERSION:
        if v not in MIGRATIONS:
            raise ArtifactError(f"manifest schema {v} is too old to read (no upgrade path)")
        raw, v = MIGRATIONS[v](raw), v + 1
    return raw
