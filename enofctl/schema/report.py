"""What `enofctl eval` reports (report.json): per artifact an `EvalResult` of one `EvalRun` per T, each with its
layers' activity (`LayerActivity`), operations (`LayerOps`), speed and NeuroBench's figures; `Report` is the
file. `Gates` are the thresholds a CI pipeline checks the results against.

Plain pydantic models (no torch): `enofctl.report` and `enofctl.plots` read them without the stages.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from enofctl import __version__
from enofctl.errors import UsageError

REPORT_SCHEMA_VERSION = 2  # 2: effective MACs, synapses, sparsity, footprint, NeuroBench; the
# classifier of a student without RepAct counted once on its time-averaged input (MACs), not as SOPs per step

LayerKind = Literal["spikes", "analog", "mixed"]


class LayerOps(BaseModel):
    """Operations and energy of one layer, per sample (over all time steps of a spiking forward)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: Literal["conv", "linear"]
    input_kind: LayerKind = Field(description="spikes: binary input on every call; analog: never; mixed: both")
    sops_per_sample: float = Field(description="accumulates triggered by input spikes (each spike x fan-out)")
    macs_per_sample: float = Field(description="dense multiply-accumulates on analog input: every tap of "
                                   "every output, padding taps and zero inputs included")
    macs_effective_per_sample: float = Field(0.0, description="multiply-accumulates of a non-zero analog "
                                             "input and a non-zero weight (padding taps excluded)")
    synapses_per_sample: float = Field(0.0, description="every (input, weight) pair of every call, padding "
                                       "taps excluded, whatever the input (NeuroBench's Dense)")
    energy_pj_per_sample: float = Field(description="macs * e_mac + sops * e_ac (dense MACs), picojoules")
    energy_effective_pj_per_sample: float = Field(0.0, description="macs_effective * e_mac + sops * e_ac, "
                                                  "picojoules")


class NeuroBenchRun(BaseModel):
    """NeuroBench's figures for one model at one T, per sample where NeuroBench gives them per sample; ``error``
    (and no figures) when NeuroBench could not measure it."""

    model_config = ConfigDict(extra="forbid")

    version: str
    error: str | None = None
    footprint_bytes: int | None = Field(None, description="Footprint: parameters and buffers, bytes")
    connection_sparsity: float | None = Field(None, description="ConnectionSparsity (rounded to 4 decimals)")
    parameter_count: int | None = None
    classification_accuracy: float | None = None
    activation_sparsity: float | None = Field(None, description="ActivationSparsity over every activation layer")
    activation_sparsity_by_layer: dict[str, float] = Field(default_factory=dict)
    effective_macs: float | None = Field(None, description="SynapticOperations Effective_MACs per sample")
    effective_acs: float | None = Field(None, description="SynapticOperations Effective_ACs per sample")
    dense: float | None = Field(None, description="SynapticOperations Dense per sample")
    membrane_updates: float | None = Field(None, description="MembraneUpdates per sample (snnTorch neurons only)")


class LayerActivity(BaseModel):
    name: str
    neurons: int = Field(description="neurons per sample")
    firing_rate: float = Field(description="spikes / (neurons * T)")
    spikes_per_sample: float
    silent: float = Field(description="fraction of neurons that never fired on the evaluated samples")
    saturated: float = Field(description="fraction of neurons that fired at every step of every sample")


class Speed(BaseModel):
    device: str
    batch_size: int
    images_per_s: float
    latency_ms_per_batch: float


class EvalRun(BaseModel):
    """One evaluation at one T (T is None for an ANN). Operations and energy are per sample."""

    T: int | None
    top1: float
    top5: float
    samples: int
    spikes_per_sample: float | None
    mean_firing_rate: float | None
    firing_rates: dict[str, float]
    layers: list[LayerActivity]
    sops: float = Field(description="synaptic operations (accumulates triggered by spikes) per sample")
    macs: float = Field(description="dense multiply-accumulates (layers fed analog values; every tap, padding "
                        "and zero inputs included) per sample")
    macs_effective: float = Field(0.0, description="multiply-accumulates of a non-zero input and a non-zero "
                                  "weight (padding excluded) per sample")
    synapses: float = Field(0.0, description="every (input, weight) pair of every layer call, padding excluded, "
                            "per sample (NeuroBench's Dense)")
    energy_pj: float = Field(description="macs * e_mac + sops * e_ac per sample (dense MACs), picojoules")
    energy_effective_pj: float = Field(0.0, description="macs_effective * e_mac + sops * e_ac per sample, "
                                       "picojoules")
    ann_energy_pj: float = Field(description="energy of the same network as an ANN: its dense macs * e_mac")
    energy_ratio: float = Field(description="energy_pj / ann_energy_pj")
    activation_sparsity: float | None = Field(None, description="zero outputs / outputs of the spiking neurons "
                                              "(1 - mean firing rate); None for an ANN")
    activation_sparsity_all: float | None = Field(None, description="zero outputs / outputs of every activation "
                                                  "module, non-spiking ones (RepAct's ReLU, an ANN's ReLUs) "
                                                  "included: NeuroBench's activation_sparsity")
    activation_sparsity_by_layer: dict[str, float] = Field(default_factory=dict)
    footprint_bytes: int = Field(0, description="parameters and buffers, bytes")
    parameters: int = 0
    connection_sparsity: float = Field(0.0, description="fraction of conv / linear weights that are exactly 0")
    classifier: str | None = Field(None, description="name of the classifier layer")
    repact_macs: float | None = Field(None, description="MACs of the classifier fed RepAct's analog feature")
    ops: list[LayerOps]
    ann_ops: list[LayerOps] = Field(default_factory=list, description="a student's network run as an ANN")
    speed: Speed | None = None
    neurobench: NeuroBenchRun | None = Field(None, description="NeuroBench's own figures (eval --neurobench)")


class EvalResult(BaseModel):
    """What `enofctl eval` reports for one artifact: one run per T in ``runs``. The top-level figures (``top1``,
    ``spikes_per_sample``, ...) are those of the run at ``T``: the student's own T when it was evaluated, else
    the largest T evaluated; ``at(T)`` gives any other run."""

    model_config = ConfigDict(protected_namespaces=())

    schema_version: Literal[2] = REPORT_SCHEMA_VERSION
    artifact: str
    sha256: str
    kind: str
    model: str
    dataset: str
    top1: float
    top5: float
    samples: int
    T: int | None
    spikes_per_sample: float | None
    firing_rates: dict[str, float]
    sops: float
    macs: float
    macs_effective: float = 0.0
    energy_pj: float
    energy_effective_pj: float = 0.0
    energy_ratio: float
    e_mac: float
    e_ac: float
    runs: list[EvalRun]

    def at(self, T: int | None) -> EvalRun:
        """The run at ``T`` (None: an ANN's one run); a UsageError names the T evaluated when it is not one."""
        run = next((r for r in self.runs if r.T == T), None)
        if run is None:
            raise UsageError(f"{Path(self.artifact).name} was evaluated at T = "
                             f"{', '.join(str(r.T) for r in self.runs)}, not at T = {T}")
        return run


class Report(BaseModel):
    """report.json: the results of one `enofctl eval --report`."""

    schema_version: Literal[2] = REPORT_SCHEMA_VERSION
    enofctl: str = __version__
    created: str = Field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    results: list[EvalResult]


class Gates(BaseModel):
    """Thresholds a CI pipeline can stop on. None: not checked."""

    model_config = ConfigDict(extra="forbid")

    min_top1: float | None = Field(None, ge=0, le=1)
    max_spikes_per_sample: float | None = Field(None, ge=0)
    max_energy_ratio: float | None = Field(None, ge=0)


