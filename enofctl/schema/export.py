"""What `enofctl export` reports: the NIR file written (`ExportResult`) and, with ``--verify``, how other
simulators reading it compare with enofctl (`VerifyResult`, one `ReaderCheck` per reader). Plain pydantic
models (no torch, no stage)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

EXPORT_SCHEMA_VERSION = 1  # of ExportResult and VerifyResult (export's --json)


class ExportResult(BaseModel):
    """What `enofctl export` wrote (its ``--json``)."""

    schema_version: Literal[1] = EXPORT_SCHEMA_VERSION
    path: str
    head: str | None = Field(None, description="the split head (safetensors), if any")
    nodes: int
    neurons: int
    dt: float
    T: int


class LayerSpikes(BaseModel):
    name: str = Field(description="enofctl's neuron (module) name")
    node: str = Field(description="the NIR node")
    enofctl: int
    folded: int = Field(description="enofctl with BatchNorm folded into the convs, as in the graph")
    reader: int


class ReaderCheck(BaseModel):
    reader: str
    agreement: float | None = Field(None, description="fraction of inputs whose predicted class equals enofctl's")
    top1: float | None = None
    spikes_equal: bool = Field(False, description="every layer's spike count equals enofctl's")
    layers_equal: int = 0
    folded_spikes_equal: bool = Field(False, description="every layer's spike count equals that of enofctl "
                                      "running the student with BatchNorm folded, as the graph has it")
    layers: list[LayerSpikes] = Field(default_factory=list)
    max_logit_diff: float | None = None
    seconds: float = 0.0
    error: str | None = Field(None, description="why the reader could not run the graph")


class VerifyResult(BaseModel):
    """`export --verify`: the graph read back by each reader, against enofctl's own forward pass."""

    schema_version: Literal[1] = EXPORT_SCHEMA_VERSION
    graph: str
    student: str
    samples: int
    T: int
    dt: float
    top1: float = Field(description="enofctl's top-1 on these samples")
    spikes: int = Field(description="enofctl's spikes over all samples, steps and layers")
    readers: list[ReaderCheck]

    @property
    def identical(self) -> bool:
        """Every reader: the same prediction for every input, and the same spikes per layer as enofctl (or,
        where folding the BatchNorm moved a current across a threshold by an ulp, as enofctl running the
        folded network the graph describes)."""
        return all(r.error is None and r.agreement == 1.0 and (r.spikes_equal or r.folded_spikes_equal)
                   for r in self.readers)
