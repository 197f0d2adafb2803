"""Stage 4: accuracy and spiking activity of an artifact (teacher or student), optionally over several T."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from enofctl import artifacts
from enofctl.data import load_dataset
from enofctl.errors import UsageError
from enofctl.spiking import SpikingNet, SpikingNeuron
from enofctl.stages.common import ProgressFn, Progress, batches_on, n_batches, resolve_device

REPORT_SCHEMA_VERSION = 1


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    T: list[int] | None = Field(None, description="time steps to evaluate a student at; None = its own T. "
                                "Teachers (ANNs) ignore it.")
    batch_size: int = Field(256, ge=1)
    limit: int | None = Field(None, ge=1, description="evaluate only the first N test samples")
    dataset: str | None = Field(None, description="override the artifact's dataset")
    data_dir: str | None = None
    download: bool = False
    device: str = "auto"


class LayerActivity(BaseModel):
    name: str
    neurons: int = Field(description="neurons per sample")
    firing_rate: float = Field(description="spikes / (neurons * T)")
    spikes_per_sample: float


class EvalRun(BaseModel):
    """One evaluation at one T (T is None for an ANN)."""

    T: int | None
    top1: float
    top5: float
    samples: int
    spikes_per_sample: float | None
    mean_firing_rate: float | None
    firing_rates: dict[str, float]
    layers: list[LayerActivity]


class EvalResult(BaseModel):
    """What `enofctl eval` reports for one artifact. The top-level figures are those of the first run."""

    model_config = ConfigDict(protected_namespaces=())

    schema_version: int = REPORT_SCHEMA_VERSION
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
    runs: list[EvalRun]


class ActivityMeter:
    """Counts the spikes each neuron layer emits during forwards, through forward hooks (no neuron state)."""

    def __init__(self, model: nn.Module):
        self.spikes: dict[str, float] = {}
        self.elements: dict[str, int] = {}
        root = model.body if isinstance(model, SpikingNet) else model  # layer names as in the teacher
        self._hooks = [
            m.register_forward_hook(self._hook(name))
            for name, m in root.named_modules() if isinstance(m, SpikingNeuron)
        ]

    def _hook(self, name: str):
        def fn(_mod, _inp, out):
            self.spikes[name] = self.spikes.get(name, 0.0) + out.detach().sum().item()
            self.elements[name] = self.elements.get(name, 0) + out.numel()

        return fn

    def close(self) -> None:
        for h in self._hooks:
            h.remove()

    def layers(self, samples: int, T: int) -> list[LayerActivity]:
        return [
            LayerActivity(name=n, neurons=self.elements[n] // (samples * T),
                          firing_rate=self.spikes[n] / self.elements[n],
                          spikes_per_sample=self.spikes[n] / samples)
            for n in self.spikes
        ]


@torch.no_grad()
def measure(model: nn.Module, split, device: torch.device, mean, std, batch_size: int = 256,
            limit: int | None = None, progress: ProgressFn | None = None) -> EvalRun:
    """Accuracy and per-layer activity of ``model`` (an ANN or a SpikingNet) on ``split``."""
    model.eval().to(device)
    meter = ActivityMeter(model)
    c1 = c5 = n = 0
    steps = n_batches(split, batch_size, limit)
    try:
        for i, (x, y) in enumerate(batches_on(split, device, mean, std, batch_size=batch_size, limit=limit)):
            logits = model(x)
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            c1 += (top[:, 0] == y).sum().item()
            c5 += (top == y[:, None]).any(1).sum().item()
            n += len(y)
            if progress:
                progress(Progress("eval", 1, 1, i + 1, steps))
    finally:
        meter.close()
    T = model.T if isinstance(model, SpikingNet) else None
    layers = meter.layers(max(n, 1), T or 1) if T else []
    total = sum(layer.spikes_per_sample for layer in layers)
    neurons = sum(layer.neurons for layer in layers)
    return EvalRun(
        T=T, top1=c1 / max(n, 1), top5=c5 / max(n, 1), samples=n,
        spikes_per_sample=total if T else None,
        mean_firing_rate=total / (neurons * T) if T and neurons else None,
        firing_rates={layer.name: layer.firing_rate for layer in layers}, layers=layers,
    )


def evaluate(path: str | Path, cfg: EvalConfig, progress: ProgressFn | None = None) -> EvalResult:
    art = artifacts.load(path)
    m = art.manifest
    data = load_dataset(cfg.dataset or m.data.dataset, cfg.data_dir or m.data.data_dir, cfg.download)
    if data.info.num_classes != m.model.num_classes or data.info.in_chans != m.model.in_chans:
        raise UsageError(f"{path} was made for {m.data.dataset} ({m.model.num_classes} classes, "
                         f"{m.model.in_chans} channels); {data.info.name} does not fit it")
    device = resolve_device(cfg.device)
    model = art.build()
    runs = []
    for T in (cfg.T or [None]) if m.kind == "student" else [None]:  # an ANN has no time steps
        if T is not None:
            model.set_T(T)
        runs.append(measure(model, data.test, device, m.model.mean, m.model.std, cfg.batch_size, cfg.limit,
                            progress))
    first = runs[0]
    return EvalResult(
        artifact=str(path), sha256=art.sha256, kind=m.kind, model=m.model.name, dataset=data.info.name,
        top1=first.top1, top5=first.top5, samples=first.samples, T=first.T,
        spikes_per_sample=first.spikes_per_sample, firing_rates=first.firing_rates, runs=runs,
    )
