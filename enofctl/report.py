"""Reports of `enofctl eval`: tables (terminal and markdown), a versioned report.json and PNG plots."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import BaseModel, Field

from enofctl import __version__
from enofctl.errors import UsageError
from enofctl.io import atomic_write, atomic_write_dir
from enofctl.plots import artifact_label, layer_run
from enofctl.stages.ablate import AblationResult, best_row
from enofctl.stages.evaluate import REPORT_SCHEMA_VERSION, EvalResult, EvalRun


class Report(BaseModel):
    schema_version: int = REPORT_SCHEMA_VERSION
    enofctl: str = __version__
    created: str = Field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    results: list[EvalResult]


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
ENERGY_HEADER = ["artifact", "T", "SOPs/img", "MACs/img", "RepAct MACs", "energy uJ/img", "x ANN"]
LAYER_HEADER = ["layer", "neurons", "rate %", "spikes/img", "silent %", "saturated %"]
OPS_HEADER = ["layer", "input", "SOPs/img", "MACs/img", "energy nJ/img", "ANN nJ/img"]


def summary_rows(results: list[EvalResult]) -> list[list[str]]:
    return [[artifact_label(r, results), r.kind, _num(run.T, "d"), _pct(run.top1), _pct(run.top5),
             _num(run.spikes_per_sample), _pct(run.mean_firing_rate),
             _num(run.speed.images_per_s if run.speed else None),
             _num(run.speed.latency_ms_per_batch if run.speed else None, ".1f")]
            for r, run in _runs(results)]


def energy_rows(results: list[EvalResult]) -> list[list[str]]:
    return [[artifact_label(r, results), _num(run.T, "d"), _num(run.sops), _num(run.macs), _num(run.repact_macs),
             _num(run.energy_pj / 1e6, ".3f"), _num(run.energy_ratio, ".3f")]
            for r, run in _runs(results)]


def layer_rows(run: EvalRun) -> list[list[str]]:
    return [[x.name, f"{x.neurons:,}", _pct(x.firing_rate), _num(x.spikes_per_sample, ",.1f"), _pct(x.silent),
             _pct(x.saturated)] for x in run.layers]


def ops_rows(run: EvalRun) -> list[list[str]]:
    ann = {o.name: o.energy_pj_per_sample for o in run.ann_ops}
    rows = []
    for o in run.ops:
        label = f"{o.name} (RepAct)" if run.repact_macs is not None and o.name == run.classifier else o.name
        rows.append([label, o.input_kind, _num(o.sops_per_sample), _num(o.macs_per_sample),
                     _num(o.energy_pj_per_sample / 1e3, ",.1f"),
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
evaluating device; SOPs = accumulates triggered by input spikes (each spike x its fan-out); MACs =
multiply-accumulates of layers fed analog values (the directly encoded first layer at every step, RepAct's
classifier once on the time-averaged feature, convs after an average pool at every step); a classifier
without RepAct reads spikes: its SOPs are the last neuron's spikes x its outputs; BatchNorm, pools, biases
and neurons are not counted; energy = MACs x E_MAC + SOPs x E_AC (E_MAC = {e_mac} pJ, E_AC = {e_ac} pJ,
Horowitz 2014, 45 nm); x ANN = energy relative to the same network run as an ANN (its MACs x E_MAC);
silent / saturated % = neurons that never fired / fired at every step on the evaluated samples.
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
    for title, header, rows in tables(results, layers_at):
        parts += [f"## {title}\n", _md_table(header, rows), ""]
    r0 = report.results[0]
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


def _spread(mean: float, std: float, seeds: int, fmt: str) -> str:
    """``mean +- std`` over several seeds; one seed has no spread, so only its value."""
    return format(mean, fmt) if seeds < 2 else f"{format(mean, fmt)} +- {format(std, fmt)}"


def ablation_markdown(result: AblationResult) -> str:
    cfg = result.config
    seeds = len(cfg.seeds)
    spread = ("Mean +- standard deviation over the seeds" if seeds > 1 else
              "One seed, so no spread: a difference between cells may be seed noise")
    samples = f" on {result.test_samples:,} test samples" if result.test_samples else ""
    parts = [f"# Ablation\n\nteacher `{result.teacher}` (top-1 "
             f"{'-' if result.teacher_top1 is None else f'{100 * result.teacher_top1:.2f} %'}{samples}, the "
             f"samples every cell is tested on); seeds {cfg.seeds}; {cfg.train.epochs} "
             f"epoch{'s' if cfg.train.epochs != 1 else ''} per cell"
             f"{f' on the first {cfg.train.limit_train:,} training samples' if cfg.train.limit_train else ''}. "
             f"{spread}; *vs teacher* in points.\n"]
    best = best_row(result)
    if best is not None and best.vs_teacher is not None:
        parts.append(f"Best student at T = {best.T}: {best.variant} ({best.grid}), "
                     f"{_spread(100 * best.top1_mean, 100 * best.top1_std, seeds, '.2f')} %, "
                     f"{100 * best.vs_teacher:+.2f} points vs the teacher.\n")
    for grid, title in (("enof", "EnOF-SNN: L_AF and RepAct"), ("activity", "Activity: KD and regularizers")):
        rows = [r for r in result.rows if r.grid == grid]
        if not rows:
            continue
        head = "| variant | T | top-1 % | vs teacher | spikes / sample |" + (" vs CE |" if grid == "activity" else "")
        sep = "|---|---|---|---|---|" + ("---|" if grid == "activity" else "")
        parts += [f"## {title}\n", head, sep]
        for r in rows:
            gap = "-" if r.vs_teacher is None else f"{100 * r.vs_teacher:+.2f}"
            line = (f"| {r.variant} | {r.T} | {_spread(100 * r.top1_mean, 100 * r.top1_std, seeds, '.2f')} | "
                    f"{gap} | {_spread(r.spikes_mean, r.spikes_std, seeds, ',.0f')} |")
            if grid == "activity":
                line += " - |" if r.spikes_vs_ce_pct is None else f" {r.spikes_vs_ce_pct:+.1f} % |"
            parts.append(line)
        parts.append("")
    return "\n".join(parts)


def write_ablation(result: AblationResult, folder: str | Path) -> Path:
    """ablation.json, ablation.md and ablation.png into ``folder``."""
    from enofctl import plots

    folder = Path(folder)
    _atomic_write(folder / "ablation.json", result.model_dump_json(indent=2))
    _atomic_write(folder / "ablation.md", ablation_markdown(result))
    _atomic_write(folder / "ablation.png", plots.ablation(result))
    return folder
