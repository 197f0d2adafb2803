"""`enofctl eval`. The stages (and torch) are imported when the command runs, not here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from enofctl.cli import groups as g
from enofctl.cli import options as o
from enofctl.cli.display import emit, err, print_table, progress
from enofctl.config import EvalConfig
from enofctl.errors import GateError

EVAL = g.EVAL


def _table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title, title_justify="left")
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    return t


@o.grouped
def evaluate(
    artifacts: Annotated[list[Path], typer.Argument(help="One or more artifacts (teacher or student), "
                                                    "compared side by side.")],
    T: Annotated[str | None, typer.Option("--T", help="Evaluate students at these time steps, e.g. 1,2,4,8.",
                                          show_default="each student's own T")] = None,
    report: Annotated[Path | None, typer.Option(help="Write report.json, report.md and PNG plots into this "
                                                   "folder.")] = None,
    limit_test: o.EvalLimitTest = None,
    limit: o.LimitDeprecated = None,
    speed_batches: Annotated[int, typer.Option(min=0, help="Timed passes over one batch for throughput, after "
                                               "two warm-up passes; the median counts (0: skip).")] = (
        EVAL.speed_batches),
    layers_at: Annotated[int | None, typer.Option(min=1, max=1024, help="Per-layer tables and figures at this T "
                                                  "(one of --T).", show_default="each student's own T, else the "
                                                  "largest evaluated")] = None,
    neurobench: Annotated[bool, typer.Option("--neurobench", help="Also run NeuroBench's own Benchmark and "
                                             "metrics on every artifact and T (extra: pip install "
                                             "'enofctl[neurobench]').")] = EVAL.neurobench,
    *,
    data: g.EvalData,
    gates: g.GateOptions,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Accuracy, spiking activity, synaptic operations, energy and speed of one or more artifacts."""
    Ts = o.parse_int_list(T)
    if layers_at is not None and layers_at not in (Ts or [layers_at]):
        raise typer.BadParameter(f"{layers_at} is not one of --T {T}", param_hint="--layers-at")
    from enofctl.report import check_report_dir, write_report  # numpy: only when the command runs

    if report is not None:
        check_report_dir(report)
    from enofctl import neurobench_adapter  # torch: only once the options are sound
    from enofctl.stages import evaluate as run
    from enofctl.stages.evaluate import gate_failures

    if neurobench:
        neurobench_adapter.require()  # the extra is missing: one line, exit 1, before anything is measured
    cfg = EvalConfig(T=Ts, limit_test=limit_test if limit_test is not None else limit, speed_batches=speed_batches,
                     neurobench=neurobench, **data)
    results = []
    for path in artifacts:
        with progress(quiet, f"eval {path.name}") as cb:
            results.append(run(path, cfg, progress=cb))
        _neurobench_failures(path, results[-1])
    if report is not None:
        write_report(results, report, layers_at)
    fails = gate_failures(results, gates)
    _show(results, fails, json_, quiet, layers_at, report)
    if fails:
        more = f" (and {len(fails) - 1} more)" if len(fails) > 1 else ""
        raise GateError(f"gate failed: {fails[0]}{more}")


def _neurobench_failures(path: Path, result) -> None:
    for r in result.runs:
        if r.neurobench is not None and r.neurobench.error is not None:
            at = f" at T={r.T}" if r.T is not None else ""
            err.print(f"NeuroBench could not measure {path.name}{at}: {r.neurobench.error}", markup=False,
                      highlight=False, soft_wrap=True)


def _show(results: list, fails: list[str], json_: bool, quiet: bool, layers_at: int | None,
          report: Path | None) -> None:
    """The results: one JSON object (--json), or the tables (quiet: the first two)."""
    from enofctl.report import tables

    if json_:
        rows = [r.model_dump(mode="json") for r in results]
        flat = rows[0] if len(rows) == 1 else {}  # one artifact: its fields at the top level too, as before
        emit({**flat, "results": rows, "gates_failed": fails}, True)  # every call: results and gates_failed
        return
    for i, (title, header, rows) in enumerate(tables(results, layers_at)):
        if i < 2 or not quiet:
            print_table(_table(title, header, rows))
    if report is not None and not quiet:
        err.print(f"report written to {report}/")


def register(app: typer.Typer) -> None:
    app.command("eval", cls=o.Command)(evaluate)
