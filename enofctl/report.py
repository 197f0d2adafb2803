"""Reports of `enofctl eval`: a versioned report.json and a report.md with tables a paper can paste."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from pydantic import BaseModel, Field

from enofctl import __version__
from enofctl.errors import UsageError
from enofctl.stages.evaluate import EvalResult


class Report(BaseModel):
    schema_version: int = 1
    enofctl: str = __version__
    created: str = Field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    results: list[EvalResult]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _num(x: float | None, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def summary_rows(results: list[EvalResult]) -> list[list[str]]:
    rows = []
    for r in results:
        for run in r.runs:
            rows.append([Path(r.artifact).name, r.kind, "-" if run.T is None else str(run.T), _pct(run.top1),
                         _pct(run.top5), _num(run.spikes_per_sample), _pct(run.mean_firing_rate), str(run.samples)])
    return rows


SUMMARY_HEADER = ["artifact", "kind", "T", "top1 %", "top5 %", "spikes/img", "rate %", "n"]
LAYER_HEADER = ["layer", "neurons", "rate %", "spikes/img"]


def layer_rows(r: EvalResult) -> list[list[str]]:
    run = r.runs[0]
    return [[layer.name, str(layer.neurons), _pct(layer.firing_rate), _num(layer.spikes_per_sample, ",.1f")]
            for layer in run.layers]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: Report) -> str:
    parts = [f"# enofctl evaluation\n\nenofctl {report.enofctl}, {report.created}\n",
             "## Summary\n", _md_table(SUMMARY_HEADER, summary_rows(report.results)), ""]
    for r in report.results:
        if r.runs[0].layers:
            parts += [f"## Per-layer activity: {Path(r.artifact).name} (T={r.runs[0].T})\n",
                      _md_table(LAYER_HEADER, layer_rows(r)), ""]
    parts.append("Firing rate = spikes / (neurons x T); spikes/sample = all spikes of all layers and steps for "
                 "one input. Accuracy on the artifact's test split.\n")
    return "\n".join(parts)


def write_report(results: list[EvalResult], folder: str | Path) -> Path:
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--report {folder} exists and is not a directory")
    if not folder.parent.is_dir():
        raise UsageError(f"--report {folder}: directory {folder.parent} does not exist")
    folder.mkdir(exist_ok=True)
    report = Report(results=results)
    for name, text in (("report.json", report.model_dump_json(indent=2)), ("report.md", markdown(report))):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, folder / name)
    return folder
