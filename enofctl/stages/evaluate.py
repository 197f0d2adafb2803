"""Stage 4: accuracy and spiking activity of an artifact (teacher or student), optionally over several T."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from enofctl import artifacts, neurobench_adapter
from enofctl.activity import ActivityMeter as ActivityMeter  # re-exported: it moved below the stages
from enofctl.artifacts import Artifact
from enofctl.config.evaluate import EvalConfig  # the config, defined without torch (re-exported)
from enofctl.data import Data, data_at, load_dataset, recorded_image_size, split_on
from enofctl.errors import UsageError
from enofctl.schema.report import REPORT_SCHEMA_VERSION as REPORT_SCHEMA_VERSION
from enofctl.schema.report import EvalResult, EvalRun, Gates  # the result models (re-exported)
from enofctl.schema.report import LayerActivity as LayerActivity
from enofctl.stages.batches import batches_on, n_batches
from enofctl.stages.context import resolve_device
from enofctl.stages.measure import measure as measure  # re-exported: it moved below the stages
from enofctl.stages.measure import measure_speed as measure_speed
from enofctl.stages.progress import ProgressFn


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
