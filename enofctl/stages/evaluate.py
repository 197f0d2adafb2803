"""Stage 4: accuracy and spiking activity of an artifact (teacher or student), optionally over several T."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn

from enofctl import artifacts, neurobench_adapter
from enofctl.activity import ActivityMeter as ActivityMeter  # re-exported: it moved below the stages
from enofctl.artifacts import Artifact
from enofctl.config.evaluate import EvalConfig  # the config, defined without torch (re-exported)
from enofctl.data import Data, data_at, load_dataset, recorded_image_size, split_on
from enofctl.errors import UsageError
from enofctl.ops import LayerOps, OpsMeter, dense_macs, footprint, totals
from enofctl.schema import ModelSpec
from enofctl.schema.report import REPORT_SCHEMA_VERSION as REPORT_SCHEMA_VERSION
from enofctl.schema.report import EvalResult, EvalRun, Gates, Speed  # the result models (re-exported)
from enofctl.schema.report import LayerActivity as LayerActivity
from enofctl.spiking import SpikingNet, logits_of
from enofctl.stages.batches import batches_on, n_batches, topk_correct
from enofctl.stages.context import resolve_device
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


def measure_artifact(art: Artifact, data: Data, cfg: EvalConfig, progress: ProgressFn | None = None) -> EvalResult:
    """The core of `eval`: a loaded artifact measured on ``data``'s test split, at each of ``cfg.T``."""
    m = art.manifest
    size = (data.info.in_chans, *data.info.image_size)
    other_size = data.info.name != m.data.dataset and size != tuple(m.model.input_size)  # its MACs would be wrong
    if data.info.num_classes != m.model.num_classes or data.info.in_chans != m.model.in_chans or other_size:
        h, w = m.model.input_size[1:]
        raise UsageError(f"{art.path} was made for {m.data.dataset} ({m.model.num_classes} classes, "
                         f"{m.model.in_chans} channels, {h}x{w}); {data.info.name} ({data.info.num_classes} "
                         f"classes, {data.info.in_chans} channels, {'x'.join(map(str, data.info.image_size))}) "
                         "does not fit it")
    device = resolve_device(cfg.device)
    model = art.build()
    runs = []
    if data.frames is None:  # one test split (and its loader) for every T
        data = replace(data, test=split_on(data.test, device, cfg.workers))
    for T in (cfg.T or [None]) if m.kind == "student" else [None]:  # an ANN has no time steps
        if T is not None:
            model.set_T(T)
        split = data_at(data, T or data.frames.T).test if data.frames is not None else data.test  # events: T frames
        split = split_on(split, device, cfg.workers)  # (itself when already there)
        run = measure(model, split, device, m.model, cfg, progress)
        if cfg.neurobench:
            run.neurobench = neurobench_adapter.benchmark(
                model, lambda split=split: batches_on(split, device, m.model.mean, m.model.std,
                                                      batch_size=cfg.batch_size, limit=cfg.limit_test),
                samples=run.samples, n_batches=n_batches(split, cfg.batch_size, cfg.limit_test))
        runs.append(run)
    first = headline_run(runs, m.spiking.T if m.spiking is not None else None)
    return EvalResult(
        artifact=str(art.path), sha256=art.sha256, kind=m.kind, model=m.model.name, dataset=data.info.name,
        top1=first.top1, top5=first.top5, samples=first.samples, T=first.T,
        spikes_per_sample=first.spikes_per_sample, firing_rates=first.firing_rates, sops=first.sops,
        macs=first.macs, macs_effective=first.macs_effective, energy_pj=first.energy_pj,
        energy_effective_pj=first.energy_effective_pj, energy_ratio=first.energy_ratio, e_mac=cfg.e_mac,
        e_ac=cfg.e_ac, runs=runs,
    )


def headline_run(runs: list[EvalRun], own_T: int | None) -> EvalRun:
    """The run a result's top-level figures come from: at the student's own T if evaluated, else the largest T."""
    own = [r for r in runs if r.T == own_T]
    return own[0] if own else max(runs, key=lambda r: r.T or 0)


def evaluate(path: str | Path, cfg: EvalConfig, progress: ProgressFn | None = None) -> EvalResult:
    """`eval`: read the artifact and its data (``cfg.dataset`` overrides the manifest's), measure it."""
    if cfg.neurobench:
        neurobench_adapter.require()  # before any work: the extra is missing
    art = artifacts.load(path)
    m = art.manifest
    name = cfg.dataset or m.data.dataset
    data = load_dataset(name, cfg.data_dir or m.data.data_dir, cfg.download,
                        frames=m.data.frames if name == m.data.dataset else None,
                        image_size=recorded_image_size(name, m.model.input_size))
    result = measure_artifact(art, data, cfg, progress)
    result.artifact = str(path)  # as given
    return result


def gate_failures(results: list[EvalResult], gates: Gates) -> list[str]:
    """Why each result fails the gates (empty when all pass). Spike and energy gates apply to students."""
    fails = []
    for r in results:
        name = Path(r.artifact).name
        for run in r.runs:
            at = f"{name}" + (f" at T={run.T}" if run.T is not None else "")
            if gates.min_top1 is not None and run.top1 < gates.min_top1:
                fails.append(f"{at}: top-1 {run.top1:.4f} < --min-top1 {gates.min_top1}")
            if run.T is None:
                continue
            if gates.max_spikes_per_sample is not None and run.spikes_per_sample > gates.max_spikes_per_sample:
                fails.append(f"{at}: {run.spikes_per_sample:,.0f} spikes/sample > --max-spikes-per-sample "
                             f"{gates.max_spikes_per_sample:g}")
            if gates.max_energy_ratio is not None and run.energy_ratio > gates.max_energy_ratio:
                fails.append(f"{at}: energy ratio {run.energy_ratio:.3f} > --max-energy-ratio "
                             f"{gates.max_energy_ratio:g}")
    return fails
