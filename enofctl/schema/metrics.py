"""The figures a stage measured on the finished model (``Manifest.metrics``), one model per artifact kind.

Every field is optional: a stage records what it measured (a fetched teacher without its dataset here has
none, a converted student none until `distill`). Serialized, a metrics record holds only the fields that are
set, so the JSON (`inspect --json`, the CLI's `--json`) is the same dict the schema-1 manifests carried.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from enofctl.schema.base import Frozen


class _Metrics(Frozen):
    top1: float | None = Field(None, ge=0.0, le=1.0, description="top-1 accuracy on the test split (fraction)")
    top5: float | None = Field(None, ge=0.0, le=1.0, description="top-5 accuracy on the test split (fraction)")
    samples: int | None = Field(None, ge=0, description="test samples the accuracies cover")
    best_epoch: int | None = Field(None, ge=0, description="with validation: the epoch whose weights were kept")
    best_val_top1: float | None = Field(None, ge=0.0, le=1.0, description="its validation top-1")

    @model_serializer(mode="wrap")
    def _set_fields_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class TeacherMetrics(_Metrics):
    """A teacher's test accuracy (`teacher train`, `teacher fetch` with its data)."""


class StudentMetrics(_Metrics):
    """A trained student's test accuracy and spiking activity (`distill`)."""

    spikes_per_sample: float | None = Field(None, ge=0.0, description="spikes of all spiking layers over all "
                                            "time steps, per test image")
    mean_firing_rate: float | None = Field(None, ge=0.0, le=1.0, description="spikes per neuron per time step")
    teacher_top1: float | None = Field(None, ge=0.0, le=1.0, description="the teacher's top-1 from its manifest")


METRICS: dict[str, type[_Metrics]] = {"teacher": TeacherMetrics, "student": StudentMetrics}
