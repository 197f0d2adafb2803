"""`ablate`: the papers' ablation tables from one teacher, same budget and seeds for every cell.

- ``enof`` (EnOF-SNN): baseline / +L_AF / +RepAct / both, at each T.
- ``activity`` (Louis et al. 2024): CE / KD / KD + activation reg. / KD + logits reg., at the largest T,
  with the change in spikes per sample relative to CE.

Every cell's student artifact is kept under ``DIR/runs/`` (`enofctl.report.write_ablation` writes the
tables and the plot beside them); a cell whose artifact is already there is read
back instead of retrained, so an interrupted ablation continues where it stopped.

Statistics (`enofctl.stats`, docs/ablate.md): per row the mean over seeds with its Student-t CI; per
comparison (``COMPARISONS``) the paired difference against the reference variant on the same seeds, its CI,
a verdict (helps / no effect found / hurts) and the minimum detectable effect at 80 % power. Everything is
computed from the cells alone, in a fixed order (grid, T, variant, seed), so a resumed run gives the same table.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from enofctl import artifacts, stats
from enofctl.config.ablate import ACTIVITY_VARIANTS as ACTIVITY_VARIANTS  # defined without torch (re-exported)
from enofctl.config.ablate import ENOF_VARIANTS as ENOF_VARIANTS
from enofctl.config.ablate import RECOMMENDED_SEEDS as RECOMMENDED_SEEDS
from enofctl.config.ablate import AblateConfig
from enofctl.config.evaluate import EvalConfig
from enofctl.data import data_at, load_dataset
from enofctl.errors import ArtifactError, UsageError
from enofctl.io import atomic_write
from enofctl.schema import Manifest
from enofctl.schema.ablation import ABLATION_SCHEMA_VERSION as ABLATION_SCHEMA_VERSION
from enofctl.schema.ablation import AblationResult as _AblationResult
from enofctl.schema.ablation import Cell, Comparison, Row  # the result models (re-exported)
from enofctl.spiking import logits_of
from enofctl.stages.batches import batches_on
from enofctl.stages.context import RunContext, resolve_device
from enofctl.stages.distill import DistillConfig, distill_student
from enofctl.stages.inputs import DistillInputs, FrozenTeacher
from enofctl.stages.measure import measure
from enofctl.stages.progress import StageWarning
from enofctl.stages.results import save_trained

# (grid, variant, reference, metrics): each variant against the cell it adds one ingredient to, per T
COMPARISONS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("enof", "+L_AF", "baseline", ("top1",)),
    ("enof", "+RepAct", "baseline", ("top1",)),
    ("enof", "both", "+L_AF", ("top1",)),
    ("enof", "both", "+RepAct", ("top1",)),
    ("activity", "KD", "CE", ("top1", "spikes_per_sample")),
    ("activity", "KD+act", "KD", ("top1", "spikes_per_sample")),
    ("activity", "KD+logits", "KD", ("top1", "spikes_per_sample")),
)


AblationResult = _AblationResult[AblateConfig]  # ablation.json (`enofctl.schema.ablation`) of this config


def plan(cfg: AblateConfig) -> list[tuple[str, str, int, int, DistillConfig]]:
    """(grid, variant, T, seed, distill config) of every cell, in run order."""
    base = cfg.train
    cells = []
    if cfg.grid in ("enof", "both"):
        for T in cfg.T:
            for name, v in ENOF_VARIANTS.items():
                for seed in cfg.seeds:
                    c = base.model_copy(update={"T": T, "seed": seed, "repact": v["repact"],
                                                "laf_lambda": base.laf_lambda if v["laf"] else 0.0})
                    cells.append(("enof", name, T, seed, c))
    if cfg.grid in ("activity", "both"):
        T = max(cfg.T)
        extra = {"CE": {}, "KD": {"kd_alpha": cfg.kd_alpha},
                 "KD+act": {"kd_alpha": cfg.kd_alpha, "act_reg": cfg.act_reg},
                 "KD+logits": {"kd_alpha": cfg.kd_alpha, "logit_reg": cfg.logit_reg}}
        for name in ACTIVITY_VARIANTS:
            for seed in cfg.seeds:
                c = base.model_copy(update={"T": T, "seed": seed, "repact": False, "laf_lambda": 0.0,
                                            **extra[name]})
                cells.append(("activity", name, T, seed, c))
    return [cell for cell in cells if cfg.variants is None or cell[1] in cfg.variants]


def _cost(c: DistillConfig) -> float:
    """A cell's training time in arbitrary units: linear in T and epochs (measured: benchmarks/train_step.md)."""
    return float(c.T or 4) * c.epochs


def _slug(grid: str, variant: str, T: int, seed: int) -> str:
    v = variant.replace("+", "plus_").replace("_", "-").lower()
    return f"{grid}_{v}_T{T}_s{seed}.safetensors"


_ORDER = {"enof": list(ENOF_VARIANTS), "activity": list(ACTIVITY_VARIANTS)}


def _groups(cells: list[Cell]) -> dict[tuple[str, str, int], list[Cell]]:
    """The cells by (grid, variant, T), in the tables' order (grid, T, variant), each group in seed order: the
    same statistics whatever order the cells come in."""
    def key(c: Cell):
        grid = list(_ORDER).index(c.grid) if c.grid in _ORDER else len(_ORDER)
        names = _ORDER.get(c.grid, [])
        return grid, c.grid, c.T, names.index(c.variant) if c.variant in names else len(names), c.variant, c.seed

    groups: dict[tuple[str, str, int], list[Cell]] = {}
    for c in sorted(cells, key=key):
        groups.setdefault((c.grid, c.variant, c.T), []).append(c)
    return groups


def summarize(cells: list[Cell], teacher_top1: float | None = None, level: float = 0.95) -> list[Row]:
    """One row per (grid, variant, T): mean, standard deviation and CI over the seeds."""
    rows = []
    for (grid, variant, T), cs in _groups(cells).items():
        top1 = stats.interval([c.top1 for c in cs], level)
        spikes = stats.interval([c.spikes_per_sample for c in cs], level)
        rows.append(Row(grid=grid, variant=variant, T=T, n=len(cs), top1_mean=top1.mean,
                        top1_std=stats.std([c.top1 for c in cs]), top1_lo=top1.lo, top1_hi=top1.hi,
                        spikes_mean=spikes.mean, spikes_std=stats.std([c.spikes_per_sample for c in cs]),
                        spikes_lo=spikes.lo, spikes_hi=spikes.hi))
    ce = {r.T: r.spikes_mean for r in rows if r.grid == "activity" and r.variant == "CE"}
    for r in rows:
        if r.grid == "activity" and ce.get(r.T):
            r.spikes_vs_ce_pct = 100 * (r.spikes_mean / ce[r.T] - 1)
        if teacher_top1 is not None:
            r.vs_teacher = r.top1_mean - teacher_top1
    return rows


Correct = dict[tuple[str, str, int, int], np.ndarray]  # (grid, variant, T, seed): bool per test image


def compare(cells: list[Cell], level: float = 0.95, correct: Correct | None = None) -> list[Comparison]:
    """Every comparison of ``COMPARISONS`` whose two variants ran at a T, paired on their common seeds; with
    ``correct`` holding every cell of a top-1 comparison, also its paired bootstrap interval."""
    groups, correct = _groups(cells), correct or {}
    out = []
    for grid, variant, reference, metrics in COMPARISONS:
        for T in sorted({T for g, _, T in groups if g == grid}):
            a, b = groups.get((grid, variant, T)), groups.get((grid, reference, T))
            if not a or not b or not {c.seed for c in a} & {c.seed for c in b}:
                continue
            for metric in metrics:
                p = stats.paired({c.seed: getattr(c, metric) for c in a}, {c.seed: getattr(c, metric) for c in b},
                                 level, higher_is_better=metric == "top1")
                boot = None
                va = {s: correct.get((grid, variant, T, s)) for s in p.seeds}
                vb = {s: correct.get((grid, reference, T, s)) for s in p.seeds}
                if metric == "top1" and all(v is not None for v in (*va.values(), *vb.values())):
                    boot = stats.paired_bootstrap(va, vb, level)
                out.append(Comparison(grid=grid, T=T, variant=variant, reference=reference, metric=metric,
                                      seeds=list(p.seeds), diff=p.diff.mean, lo=p.diff.lo, hi=p.diff.hi,
                                      verdict=p.verdict, mde=p.mde, boot_lo=boot and boot[0],
                                      boot_hi=boot and boot[1]))
    return out


def seed_warning(seeds: list[int]) -> str | None:
    """A warning for too few seeds to judge an ablation (None: enough)."""
    if len(seeds) < 2:
        return (f"--seeds {','.join(map(str, seeds))}: one seed gives no confidence interval, so no verdict; "
                f"use {RECOMMENDED_SEEDS} seeds")
    if len(seeds) < RECOMMENDED_SEEDS:
        return (f"--seeds: {len(seeds)} seeds; ablation verdicts need {RECOMMENDED_SEEDS} (intervals from fewer "
                "are wide and the MDE large)")
    return None


def best_row(result: AblationResult, T: int | None = None) -> Row | None:
    """The most accurate variant at ``T`` (default: the largest T of the run): `AblationResult.best_row`."""
    return result.best_row(T)


# (index, total, description, seconds so far, estimated seconds left or None before the first trained cell)
CellFn = Callable[[int, int, str, float, float | None], None]


def _finished(path: Path, dcfg: DistillConfig) -> Manifest | None:
    """The manifest of a cell trained before with this very config (None: train it)."""
    try:
        m = artifacts.load(path, expect="student").manifest
    except (UsageError, ArtifactError):
        return None
    same = {**DistillConfig().model_dump(), **m.config} | _NO_EFFECT == dcfg.model_dump() | _NO_EFFECT
    return m if same else None  # defaults: options added later


_NO_EFFECT = {"workers": None, "log_every": None}  # options that change no result: any value will do


def correct_path(artifact: str | Path) -> Path:
    """A cell's per-test-image correctness, beside its artifact: ``NAME.correct.bin`` (numpy.packbits of one
    bool per test image, in test-split order)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name.removesuffix(".safetensors") + ".correct.bin")


@torch.no_grad()
def per_image_correct(model, split, device, spec, limit: int | None) -> np.ndarray:
    """Whether ``model``'s top-1 is right on each test image (the first ``limit``), in split order."""
    model.eval()
    out = [(logits_of(model, x).argmax(1) == y).cpu()
           for x, y in batches_on(split, device, spec.mean, spec.std, batch_size=256, limit=limit)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=bool)


def read_correct(artifact: str | Path, samples: int | None) -> np.ndarray | None:
    """A cell's per-image correctness (None: no sidecar, or not ``samples`` images: e.g. a cell of an older run)."""
    path = correct_path(artifact)
    if samples is None or not path.is_file() or path.stat().st_size != (samples + 7) // 8:
        return None
    return np.unpackbits(np.frombuffer(path.read_bytes(), dtype=np.uint8), count=samples).astype(bool)


def train_cell(dcfg: DistillConfig, src: DistillInputs, path: Path) -> Manifest:
    """One cell: a student distilled from the loaded teacher and data, written to ``path``, with its per-image
    correctness beside it (`correct_path`, for the paired bootstrap)."""
    run = RunContext.build(dcfg, src.data.info)
    trained = distill_student(dcfg, src, run=run)
    test = data_at(src.data, trained.model.T).test  # event data: at the student's T
    correct = per_image_correct(trained.model, test, run.device, trained.manifest.model, dcfg.limit_test)
    ranks = run.ranks
    ranks.on_main(lambda: atomic_write(correct_path(path), lambda tmp: tmp.write_bytes(np.packbits(correct).tobytes())))
    return save_trained(path, trained, ranks).manifest


def run_cells(todo: list, src: DistillInputs, runs: Path, on_cell: CellFn | None) -> list[Cell]:
    """Every planned cell, trained (or read back when already there) under ``runs``, in order."""
    cells: list[Cell] = []
    done: dict[str, Path] = {}  # identical cells (the enof baseline is the activity grid's CE) train once
    keys = [c.model_dump_json() for *_, c in todo]
    costs = {k: _cost(c) for k, (*_, c) in zip(keys, todo, strict=True)}
    start = time.perf_counter()
    trained_s = trained_cost = 0.0  # for the estimate: seconds per unit of _cost over the cells trained so far
    for i, (grid, variant, T, seed, dcfg) in enumerate(todo):
        path = done.get(keys[i], runs / _slug(grid, variant, T, seed))
        if on_cell:
            left = sum(costs[k] for k in set(keys[i:]) - done.keys())
            on_cell(i, len(todo), f"{grid} {variant} T={T} seed={seed}", time.perf_counter() - start,
                    trained_s / trained_cost * left if trained_cost else None)
        t0 = time.perf_counter()
        m = _finished(path, dcfg)  # the same cell run above, or a finished cell of an interrupted ablation
        if m is None:
            m = train_cell(dcfg, src, path)
            trained_s, trained_cost = trained_s + time.perf_counter() - t0, trained_cost + _cost(dcfg)
        done[keys[i]] = path
        cells.append(Cell(grid=grid, variant=variant, T=T, seed=seed, artifact=str(path),
                          top1=m.metrics.top1, spikes_per_sample=m.metrics.spikes_per_sample,
                          seconds=time.perf_counter() - t0))
    if on_cell:
        on_cell(len(todo), len(todo), "done", time.perf_counter() - start, 0.0)
    return cells


def ablate(cfg: AblateConfig, teacher: str | Path, out_dir: str | Path,
           on_cell: CellFn | None = None) -> AblationResult:
    """Every cell of the plan under ``out_dir/runs``; the teacher is read, built and measured once."""
    out_dir = Path(out_dir)
    if not out_dir.parent.is_dir():
        raise UsageError(f"--out {out_dir}: directory {out_dir.parent} does not exist")
    todo = plan(cfg)
    if not todo:
        raise UsageError(f"--variants {','.join(cfg.variants or [])}: none is in --grid {cfg.grid}")
    few = seed_warning(cfg.seeds)
    if few:
        warnings.warn(few, StageWarning, stacklevel=2)
    t_art = artifacts.load(teacher, expect="teacher")  # the right kind, before anything is measured or trained
    tm = t_art.manifest
    src = DistillInputs(FrozenTeacher.of(t_art), load_dataset(tm.data.dataset, cfg.train.data_dir or tm.data.data_dir,
                                                              frames=tm.data.frames),  # event data: its frames
                        starts={})  # cells of one seed and T that differ only in their loss share the start
    # the teacher on the very samples the cells are tested on (its manifest's figure may cover others)
    t_run = measure(src.teacher.model, src.data.test, resolve_device(cfg.train.device), tm.model,
                    EvalConfig(limit=cfg.train.limit_test, speed_batches=0))
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    cells = run_cells(todo, src, out_dir / "runs", on_cell)
    correct = {(c.grid, c.variant, c.T, c.seed): read_correct(c.artifact, t_run.samples) for c in cells}
    return result_of(cfg, str(teacher), t_run.top1, t_run.samples, cells,
                     {k: v for k, v in correct.items() if v is not None})


def result_of(cfg: AblateConfig, teacher: str, teacher_top1: float | None, test_samples: int | None,
              cells: list[Cell], correct: Correct | None = None) -> AblationResult:
    """The result of finished cells: rows and comparisons computed from them (and their per-image correctness,
    for the bootstrap) alone (`summarize`, `compare`)."""
    return AblationResult(teacher=teacher, teacher_top1=teacher_top1, test_samples=test_samples, config=cfg,
                          cells=cells, rows=summarize(cells, teacher_top1, cfg.ci),
                          comparisons=compare(cells, cfg.ci, correct))
