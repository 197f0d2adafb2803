"""Measuring one model on one split: accuracy, per-layer activity, operations, energy and speed (`measure`),
what `eval` reports per T and what `distill` and `ablate` record of a trained student. Below the stages: any
stage calls it without importing another stage's module."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn

from enofctl.activity import ActivityMeter
from enofctl.config.evaluate import EvalConfig
from enofctl.ops import LayerOps, OpsMeter, dense_macs, footprint, totals
from enofctl.schema import ModelSpec
from enofctl.schema.report import EvalRun, Speed
from enofctl.spiking import SpikingNet, logits_of
from enofctl.stages.batches import batches_on, n_batches, topk_correct
from enofctl.stages.progress import ProgressEvent, ProgressFn


@torch.no_grad()
def measure_speed(model: nn.Module, split, device: torch.device, spec: ModelSpec, cfg: EvalConfig) -> Speed | None:
    """Inference throughput and latency on one batch of ``cfg.batch_size``: two warm-up passes (allocator,
    thread pools, kernels), then ``cfg.speed_batches`` timed passes, without any hooks; the median pass counts,
    so one slow pass (the first of a process, a busy machine) does not decide the figure."""
    passes = cfg.speed_batches
    if passes <= 0:
        return None
    x = next(iter(batches_on(split, device, spec.mean, spec.std, batch_size=cfg.batch_size)), (None,))[0]
    if x is None:
        return None
    for _ in range(2):
        logits_of(model, x)  # warm-up
    times = []
    for _ in range(passes):
        _sync(device)
        t0 = time.perf_counter()
        logits_of(model, x)
        _sync(device)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return Speed(device=str(device), batch_size=len(x), images_per_s=len(x) / median,
                 latency_ms_per_batch=1000 * median)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure(model: nn.Module, split, device: torch.device, spec: ModelSpec, cfg: EvalConfig | None = None,
            progress: ProgressFn | None = None) -> EvalRun:
    """Accuracy, per-layer activity, operations and energy of ``model`` (an ANN or a SpikingNet) on ``split``;
    ``spec`` gives the input size and normalization, ``cfg`` the batch size, limit, energies and speed
    batches (default: `EvalConfig` without the speed measurement)."""
    cfg = cfg or EvalConfig(speed_batches=0)
    batch_size, limit, e_mac, e_ac = cfg.batch_size, cfg.limit_test, cfg.e_mac, cfg.e_ac
    model.eval().to(device)
    spiking = isinstance(model, SpikingNet)
    meter = ActivityMeter(model)
    ops = OpsMeter(model, force_analog=not spiking)  # an ANN multiplies in every layer, whatever its input
    c1 = c5 = n = 0
    steps = n_batches(split, batch_size, limit)
    try:
        for i, (x, y) in enumerate(batches_on(split, device, spec.mean, spec.std, batch_size=batch_size,
                                                 limit=limit)):
            k1, k5 = topk_correct(logits_of(model, x), y)
            c1, c5, n = c1 + k1, c5 + k5, n + len(y)
            if progress:
                progress(ProgressEvent("eval", 1, 1, i + 1, steps))
    finally:
        meter.close()
        ops.close()
    T = model.T if spiking else None
    layers = meter.layers(max(n, 1), T or 1) if spiking else []
    total = sum(layer.spikes_per_sample for layer in layers)
    neurons = sum(layer.neurons for layer in layers)
    ann_rows = dense_macs(model, spec.input_size, e_mac=e_mac)
    frames = getattr(split, "frames", None)
    if frames is not None:  # event data: the ANN runs once per frame, T frames per sample
        ann_rows = [_times(r, frames.T) for r in ann_rows]
    op_rows = ops.rows(max(n, 1), e_mac, e_ac) if n or spiking else ann_rows
    tot, ann = totals(op_rows), totals(ann_rows)
    static = footprint(model)
    head = _classifier_name(model)
    repact_macs = next((r.macs_per_sample for r in op_rows if r.name == head), None) \
        if spiking and model.spec.repact else None
    return EvalRun(
        T=T, top1=c1 / max(n, 1), top5=c5 / max(n, 1), samples=n,
        spikes_per_sample=total if spiking else None,
        mean_firing_rate=total / (neurons * T) if spiking and neurons else None,
        firing_rates={layer.name: layer.firing_rate for layer in layers}, layers=layers,
        sops=tot["sops"], macs=tot["macs"], macs_effective=tot["macs_effective"], synapses=tot["synapses"],
        energy_pj=tot["energy_pj"], energy_effective_pj=tot["energy_effective_pj"], ann_energy_pj=ann["energy_pj"],
        energy_ratio=tot["energy_pj"] / ann["energy_pj"] if ann["energy_pj"] else float("nan"),
        activation_sparsity=meter.sparsity(spiking_only=True) if spiking else None,
        activation_sparsity_all=meter.sparsity(spiking_only=False),
        activation_sparsity_by_layer=meter.sparsity_by_layer(), footprint_bytes=static["footprint_bytes"],
        parameters=static["parameters"], connection_sparsity=static["connection_sparsity"],
        classifier=head, repact_macs=repact_macs, ops=op_rows, ann_ops=ann_rows if spiking else [],
        speed=measure_speed(model, split, device, spec, cfg),
    )


def _times(row: LayerOps, k: int) -> LayerOps:
    return row.model_copy(update={"sops_per_sample": row.sops_per_sample * k,
                                  "macs_per_sample": row.macs_per_sample * k,
                                  "energy_pj_per_sample": row.energy_pj_per_sample * k})


def _classifier_name(model: nn.Module) -> str | None:
    root = model.body if isinstance(model, SpikingNet) else model
    head = model.get_classifier()
    return next((n for n, m in root.named_modules() if m is head), None)
