"""Reports of `enofctl eval`: tables (terminal and markdown), a versioned report.json and PNG plots."""

from __future__ import annotations

from pathlib import Path

from enofctl.errors import UsageError
from enofctl.io import atomic_write, atomic_write_dir
from enofctl.plots import artifact_label, layer_run
from enofctl.schema.ablation import AblationResult
from enofctl.schema.report import EvalResult, EvalRun
from enofctl.schema.report import Report as Report  # re-exported: report.json's model is in the schema


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _num(x: float | None, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _runs(results: list[EvalResult]):
    for r in results:
        for run in r.runs:
            yield r, run


# Each table: (title, header, rows). Short headers so the tables fit a 100-column terminal.
SUMMARY_HEADER = ["artifact", "kind", "T", "top1 %", "top5 %", "spikes/img", "rate %", "img/s", "ms/batch"]
ENERGY_HEADER = ["artifact", "T", "SOPs/img", "MACs dense", "MACs eff.", "RepAct MACs", "uJ dense", "uJ eff.",
                 "x ANN"]
LAYER_HEADER = ["layer", "neurons", "rate %", "spikes/img", "silent %", "saturated %"]
OPS_HEADER = ["layer", "input", "SOPs/img", "MACs dense", "MACs eff.", "nJ dense", "ANN nJ"]
NEUROBENCH_HEADER = ["artifact", "T", "accuracy %", "act. sparsity %", "Effective_ACs", "Effective_MACs", "Dense",
                     "membrane upd.", "footprint B", "conn. sparsity", "params", "= enofctl"]
PAPER_HEADER = ["artifact", "T", "top-1 %", "spikes/img", "sparsity % (SNN / all)", "SOPs (ACs)/img",
                "MACs dense/img", "MACs effective/img", "energy uJ/img (dense MACs)", "energy uJ/img (effective)"]


def summary_rows(results: list[EvalResult]) -> list[list[str]]:
    return [[artifact_label(r, results), r.kind, _num(run.T, "d"), _pct(run.top1), _pct(run.top5),
             _num(run.spikes_per_sample), _pct(run.mean_firing_rate),
             _num(run.speed.images_per_s if run.speed else None),
             _num(run.speed.latency_ms_per_batch if run.speed else None, ".1f")]
            for r, run in _runs(results)]


def energy_rows(results: list[EvalResult]) -> list[list[str]]:
    return [[artifact_label(r, results), _num(run.T, "d"), _num(run.sops), _num(run.macs), _num(run.macs_effective),
             _num(run.repact_macs), _num(run.energy_pj / 1e6, ".3f"), _num(run.energy_effective_pj / 1e6, ".3f"),
             _num(run.energy_ratio, ".3f")]
            for r, run in _runs(results)]


def agreement(run: EvalRun) -> list[str]:
    """Which of NeuroBench's figures differ from enofctl's on the same run (empty: all agree). NeuroBench
    rounds connection sparsity to 4 decimals and averages accuracy over batches in float32, so accuracy agrees
    when both give the same number of correct images."""
    nb = run.neurobench
    if nb is None or nb.error is not None:
        return []
    pairs = {"Effective_ACs": (nb.effective_acs, run.sops), "Effective_MACs": (nb.effective_macs, run.macs_effective),
             "Dense": (nb.dense, run.synapses), "activation_sparsity": (nb.activation_sparsity,
                                                                        run.activation_sparsity_all),
             "footprint": (nb.footprint_bytes, run.footprint_bytes), "parameters": (nb.parameter_count,
                                                                                   run.parameters),
             "connection_sparsity": (nb.connection_sparsity, round(run.connection_sparsity, 4))}
    differ = [k for k, (a, b) in pairs.items() if a is None or abs(a - b) > 1e-9 * max(1.0, abs(b))]
    if round(nb.classification_accuracy * run.samples) != round(run.top1 * run.samples):
        differ.append("accuracy")
    return differ


def neurobench_rows(results: list[EvalResult]) -> list[list[str]]:
    rows = []
    for r, run in _runs(results):
        nb = run.neurobench
        if nb is None:
            continue
        label = artifact_label(r, results)
        if nb.error is not None:
            rows.append([label, _num(run.T, "d"), f"not measured: {nb.error}"] + [""] * 9)
            continue
        diff = agreement(run)
        rows.append([label, _num(run.T, "d"), _pct(nb.classification_accuracy), _pct(nb.activation_sparsity),
                     _num(nb.effective_acs), _num(nb.effective_macs), _num(nb.dense), _num(nb.membrane_updates),
                     _num(nb.footprint_bytes), _num(nb.connection_sparsity, ".4f"), _num(nb.parameter_count),
                     "yes" if not diff else "differs: " + ", ".join(diff)])
    return rows


def paper_rows(results: list[EvalResult]) -> list[list[str]]:
    return [[artifact_label(r, results), _num(run.T, "d"), _pct(run.top1), _num(run.spikes_per_sample),
             f"{_pct(run.activation_sparsity)} / {_pct(run.activation_sparsity_all)}", _num(run.sops),
             _num(run.macs), _num(run.macs_effective), _num(run.energy_pj / 1e6, ".3f"),
             _num(run.energy_effective_pj / 1e6, ".3f")] for r, run in _runs(results)]


def layer_rows(run: EvalRun) -> list[list[str]]:
    return [[x.name, f"{x.neurons:,}", _pct(x.firing_rate), _num(x.spikes_per_sample, ",.1f"), _pct(x.silent),
             _pct(x.saturated)] for x in run.layers]


def ops_rows(run: EvalRun) -> list[list[str]]:
    ann = {o.name: o.energy_pj_per_sample for o in run.ann_ops}
    rows = []
    for o in run.ops:
        label = f"{o.name} (RepAct)" if run.repact_macs is not None and o.name == run.classifier else o.name
        rows.append([label, o.input_kind, _num(o.sops_per_sample), _num(o.macs_per_sample),
                     _num(o.macs_effective_per_sample), _num(o.energy_pj_per_sample / 1e3, ",.1f"),
                     _num(ann[o.name] / 1e3, ",.1f") if o.name in ann else "-"])
    return rows


def tables(results: list[EvalResult], layers_at: int | None = None) -> list[tuple[str, list, list]]:
    """The summary and energy tables (every run), then each student's per-layer tables at ``layers_at`` (default:
    the T of its top-level figures, its own T or the largest evaluated)."""
    out = [("Accuracy and activity", SUMMARY_HEADER, summary_rows(results)),
           ("Operations and energy (per image)", ENERGY_HEADER, energy_rows(results))]
    for r in results:
        run = layer_run(r, layers_at)
        if run.layers:
            out.append((f"Per-layer activity: {artifact_label(r, results)} (T={run.T})", LAYER_HEADER,
                        layer_rows(run)))
        if run.T is not None:
            out.append((f"Per-layer operations: {artifact_label(r, results)} (T={run.T})", OPS_HEADER,
                        ops_rows(run)))
    nb = neurobench_rows(results)
    if nb:
        versions = sorted({run.neurobench.version for _, run in _runs(results) if run.neurobench is not None})
        out.append((f"NeuroBench {', '.join(versions)} (its own Benchmark and metrics, per image)", NEUROBENCH_HEADER,
                    nb))
    return out


WHAT_HEADER = ["artifact", "file", "kind", "model", "dataset", "test samples", "T evaluated", "per-layer at T"]


def what_rows(results: list[EvalResult], layers_at: int | None = None) -> list[list[str]]:
    """What was evaluated: for each artifact its model, dataset, number of test samples and the T."""
    return [[artifact_label(r, results), Path(r.artifact).name, r.kind, r.model, r.dataset, f"{r.samples:,}",
             ", ".join(str(run.T) for run in r.runs) if r.kind == "student" else "- (ANN)",
             _num(layer_run(r, layers_at).T, "d")] for r in results]


LEGEND = """\
Columns: top1/top5 % = accuracy on the test split; spikes/img = spikes of all spiking layers over all T
steps for one input; rate % = spikes / (neurons x T); img/s and ms/batch = measured inference speed on the
evaluating device. Every conv / linear layer is counted on the input it receives, at every call: SOPs (ACs)
= accumulates triggered by input spikes (each spike x its fan-out); MACs = multiply-accumulates of layers fed
analog values (the directly encoded first layer at every step, convs after an average pool at every step,
the classifier once on the time-averaged feature: RepAct's ReLU output, or without RepAct the averaged
spikes), *dense* (every tap, zero-padding taps and zero inputs included) and *effective* (only a non-zero
input x a non-zero weight, padding excluded: NeuroBench's Effective_MACs); BatchNorm, pools, biases and
neurons are not counted; energy = MACs x E_MAC + SOPs x E_AC (E_MAC = {e_mac} pJ, E_AC = {e_ac} pJ,
Horowitz 2014, 45 nm), with dense or effective MACs as the column says; x ANN = dense energy relative to the
same network run as an ANN (its dense MACs x E_MAC); sparsity % = zero outputs of the spiking neurons / of
every activation, non-spiking ones (RepAct's ReLU) included; silent / saturated % = neurons that never fired
/ fired at every step on the evaluated samples.
"""

NEUROBENCH_LEGEND = """\
NeuroBench {version}: its own `Benchmark` with the static metrics Footprint, ConnectionSparsity and
ParameterCount and the workload metrics ClassificationAccuracy, ActivationSparsity (every activation layer),
SynapticOperations (Effective_ACs, Effective_MACs, Dense: every synapse, padding excluded) and MembraneUpdates
(NeuroBench 2.3 reads the membrane of snnTorch neurons only: 0 for enofctl's neurons), run through
`enofctl/neurobench_adapter.py`; *= enofctl* says whether its figures equal enofctl's (Effective_ACs = SOPs,
Effective_MACs = effective MACs, Dense = synapses, activation sparsity with non-spiking layers, footprint,
parameters, accuracy). NeuroBench skips zero weights in Effective_ACs, enofctl's SOPs do not: they agree
when connection sparsity is 0.
"""


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: Report, plots: list[str], layers_at: int | None = None) -> str:
    results = report.results
    parts = [f"# enofctl evaluation\n\nenofctl {report.enofctl}, {report.created}. {_what(results)}\n",
             _md_table(WHAT_HEADER, what_rows(results, layers_at)), "",
             "Per-layer tables and figures are at the T in the last column (the student's own T when evaluated, "
             "else the largest; `--layers-at T` picks another); report.json holds every T's.\n"]
    r0 = report.results[0]
    parts += [f"## Paste-ready summary (per image; E_MAC = {r0.e_mac} pJ, E_AC = {r0.e_ac} pJ)\n",
              _md_table(PAPER_HEADER, paper_rows(results)), ""]
    ours = tables(results, layers_at)
    nb = [t for t in ours if t[1] is NEUROBENCH_HEADER]  # beside the summary
    versions = sorted({run.neurobench.version for _, run in _runs(results) if run.neurobench is not None})
    for title, header, rows in nb:
        parts += [f"## {title}\n", _md_table(header, rows), "", NEUROBENCH_LEGEND.format(version=", ".join(versions))]
    for title, header, rows in ours:
        if header is not NEUROBENCH_HEADER:
            parts += [f"## {title}\n", _md_table(header, rows), ""]
    parts.append(LEGEND.format(e_mac=r0.e_mac, e_ac=r0.e_ac))
    parts += [f"![{p}]({p})\n" for p in plots]
    return "\n".join(parts)


def _atomic_write(path: Path, data: str | bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data.encode() if isinstance(data, str) else data))


def check_report_dir(folder: str | Path) -> Path:
    """``folder`` if `write_report` may write it: absent (its parent exists), empty, or an earlier report (only
    report.json, report.md and PNGs in it), which is replaced as a whole. A folder holding anything else is
    refused: replacing it would delete what is not ours."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--report {folder} exists and is not a directory")
    if not folder.parent.is_dir():
        raise UsageError(f"--report {folder}: directory {folder.parent} does not exist")
    if folder.is_dir():
        other = sorted(p.name for p in folder.iterdir() if not _report_file(p))
        if other:
            raise UsageError(f"--report {folder} holds other files than a report ({', '.join(other[:3])}); it "
                             "would be replaced as a whole: give a new or empty folder")
    return folder


def _report_file(p: Path) -> bool:
    return p.is_file() and not p.is_symlink() and (p.name in ("report.json", "report.md") or p.suffix == ".png")


def _what(results: list[EvalResult]) -> str:
    """One sentence: which dataset and how many test samples, e.g. "digits test split, 360 samples"."""
    seen = dict.fromkeys(f"{r.dataset} test split, {r.samples:,} samples" for r in results)
    return "Evaluated on the " + "; ".join(seen) + "."


def write_report(results: list[EvalResult], folder: str | Path, layers_at: int | None = None) -> Path:
    """report.json, report.md and the plots as the folder ``folder``, written whole or not at all (see
    `check_report_dir` for an existing one); per-layer tables and figures at ``layers_at`` (default: each
    student's own T, else its largest)."""
    from enofctl import plots

    folder = check_report_dir(folder)
    report = Report(results=results)
    figures = plots.all_plots(results, layers_at)  # drawn before anything is written

    def fill(tmp: Path) -> None:
        for name, png in figures.items():
            _write(tmp / name, png)
        _write(tmp / "report.json", report.model_dump_json(indent=2))
        _write(tmp / "report.md", markdown(report, list(figures), layers_at))

    return atomic_write_dir(folder, fill)  # all of it or none of it; an earlier report is swapped out


def _write(path: Path, data: str | bytes) -> None:
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _level(cfg) -> str:
    return f"{100 * cfg.ci:g} %"


def _ci(mean: float, lo: float | None, hi: float | None, n: int, fmt: str, scale: float = 1.0,
        sign: str = "") -> str:
    """``mean [lo, hi]``; one seed has no interval, and says so."""
    m = format(scale * mean, sign + fmt)
    if lo is None or hi is None:
        return f"{m} ({n} seed: no interval)" if n < 2 else m
    return f"{m} [{format(scale * lo, sign + fmt)}, {format(scale * hi, sign + fmt)}]"


def _ci_only(r) -> str:
    return f"[{100 * r.top1_lo:.2f}, {100 * r.top1_hi:.2f}]"


_METRIC = {"top1": ("top-1, points", 100.0, ".2f"), "spikes_per_sample": ("spikes / sample", 1.0, ",.0f")}


def comparison_rows(result: AblationResult, grid: str) -> list[list[str]]:
    rows = []
    for c in result.comparisons:
        if c.grid != grid:
            continue
        name, scale, fmt = _METRIC[c.metric]
        boot = "-" if c.boot_lo is None else f"[{scale * c.boot_lo:+.2f}, {scale * c.boot_hi:+.2f}]"
        rows.append([str(c.T), f"{c.variant} vs {c.reference}", name,
                     _ci(c.diff, c.lo, c.hi, len(c.seeds), fmt, scale, "+"), c.verdict,
                     "-" if c.mde is None else format(scale * c.mde, fmt), str(len(c.seeds)), boot])
    return rows


STATS_LEGEND = """\
Error bars and intervals are {level} confidence intervals: Student t over the seeds for a mean, and for a
*paired diff* the t interval of the per-seed differences (variant minus reference, each pair run with the same
seed: the same data order and calibration images). Verdict: *helps* / *hurts* when the interval excludes 0
(for spikes, fewer is better), else *no effect found* - not "no effect", only none the run could resolve.
MDE = minimum detectable effect: the smallest true difference a two-sided paired t test at this level finds
with 80 % power, (t_(1+L)/2,n-1 + t_0.8,n-1) * s_d / sqrt(n) (docs/ablate.md). With one seed there is no
interval and no verdict. *bootstrap*: a paired bootstrap interval (2,000 resamples of seeds and test images,
same level) of the top-1 difference, a check on the t interval; "-" where a cell's per-image record is missing.
"""


def ablation_markdown(result: AblationResult) -> str:
    cfg = result.config
    seeds = len(cfg.seeds)
    level = _level(cfg)
    spread = (f"Mean [{level} CI] over {seeds} seeds" if seeds > 1 else
              "1 seed: no interval, so no verdict: a difference between cells may be seed noise")
    samples = f" on {result.test_samples:,} test samples" if result.test_samples else ""
    subset = (f" on a fixed stratified subset of {cfg.train.limit_train:,} training samples (drawn per seed)"
              if cfg.train.limit_train else "")
    start = "trained from scratch (`--init scratch`)" if cfg.train.init == "scratch" else "from the teacher's weights"
    parts = [f"# Ablation\n\nteacher `{result.teacher}` (top-1 "
             f"{'-' if result.teacher_top1 is None else f'{100 * result.teacher_top1:.2f} %'}{samples}, the "
             f"samples every cell is tested on); seeds {cfg.seeds}; {cfg.train.epochs} "
             f"epoch{'s' if cfg.train.epochs != 1 else ''} per cell{subset}, students {start}. "
             f"{spread}; *vs teacher* in points.\n"]
    best = result.best_row()
    if best is not None and best.vs_teacher is not None:
        parts.append(f"Best student at T = {best.T}: {best.variant} ({best.grid}), "
                     f"{100 * best.top1_mean:.2f} % ("
                     f"{'1 seed: no interval' if best.top1_lo is None else _level(cfg) + ' CI ' + _ci_only(best)}), "
                     f"{100 * best.vs_teacher:+.2f} points vs the teacher.\n")
    for grid, title in (("enof", "EnOF-SNN: L_AF and RepAct"), ("activity", "Activity: KD and regularizers")):
        rows = [r for r in result.rows if r.grid == grid]
        if not rows:
            continue
        head = (f"| variant | T | top-1 % [{level} CI] | vs teacher | spikes / sample [{level} CI] |"
                + (" vs CE |" if grid == "activity" else ""))
        sep = "|---|---|---|---|---|" + ("---|" if grid == "activity" else "")
        parts += [f"## {title}\n", head, sep]
        for r in rows:
            gap = "-" if r.vs_teacher is None else f"{100 * r.vs_teacher:+.2f}"
            line = (f"| {r.variant} | {r.T} | {_ci(r.top1_mean, r.top1_lo, r.top1_hi, r.n, '.2f', 100)} | "
                    f"{gap} | {_ci(r.spikes_mean, r.spikes_lo, r.spikes_hi, r.n, ',.0f')} |")
            if grid == "activity":
                line += " - |" if r.spikes_vs_ce_pct is None else f" {r.spikes_vs_ce_pct:+.1f} % |"
            parts.append(line)
        parts.append("")
        comparisons = comparison_rows(result, grid)
        if comparisons:
            parts += [f"### {title}: paired differences\n",
                      _md_table(["T", "comparison", "metric", f"paired diff [{level} CI]", "verdict", "MDE",
                                 "seeds", "bootstrap"], comparisons), ""]
    parts.append(STATS_LEGEND.format(level=level))
    return "\n".join(parts)


def write_ablation(result: AblationResult, folder: str | Path) -> Path:
    """ablation.json, ablation.md and ablation.png into ``folder``."""
    from enofctl import plots

    folder = Path(folder)
    _atomic_write(folder / "ablation.json", result.model_dump_json(indent=2))
    _atomic_write(folder / "ablation.md", ablation_markdown(result))
    _atomic_write(folder / "ablation.png", plots.ablation(result))
    return folder
