"""`enofctl eval`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from enofctl.cli import options as o
from enofctl.cli.display import emit, err, progress


def _table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    t = Table(title=title, title_justify="left")
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    return t


def evaluate(
    artifacts: Annotated[list[Path], typer.Argument(help="One or more artifacts (teacher or student), "
                                                    "compared side by side.")],
    T: Annotated[str | None, typer.Option("--T", help="Evaluate students at these time steps, e.g. 1,2,4,8 "
                                             "[default: each student's own T].")] = None,
    report: Annotated[Path | None, typer.Option(help="Write report.json, report.md and PNG plots into this "
                                                   "folder.")] = None,
    limit: o.Limit = None,
    batch_size: o.BatchSize = 256,
    dataset: Annotated[str | None, typer.Option(help="Evaluate on this dataset instead of the artifact's.")] = None,
    data_dir: o.DataDir = None,
    download: o.Download = False,
    device: o.DeviceOpt = o.Device.auto,
    e_mac: Annotated[float, typer.Option(min=0.0, help="Energy per multiply-accumulate, pJ.")] = 4.6,
    e_ac: Annotated[float, typer.Option(min=0.0, help="Energy per accumulate, pJ.")] = 0.9,
    speed_batches: Annotated[int, typer.Option(min=0, help="Batches timed for throughput (0: skip).")] = 5,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Accuracy, spiking activity, synaptic operations, energy and speed of one or more artifacts."""
    from enofctl.report import check_report_dir, tables, write_report
    from enofctl.stages import EvalConfig
    from enofctl.stages import evaluate as run

    Ts = o.parse_int_list(T)
    if report is not None:
        check_report_dir(report)
    cfg = EvalConfig(T=Ts, limit=limit, batch_size=batch_size, dataset=dataset,
                     data_dir=str(data_dir) if data_dir else None, download=download, device=device.value,
                     e_mac=e_mac, e_ac=e_ac, speed_batches=speed_batches)
    results = []
    for path in artifacts:
        with progress(quiet or json_, f"eval {path.name}") as cb:
            results.append(run(path, cfg, progress=cb))
    if report is not None:
        write_report(results, report)
    if json_:
        emit(results[0] if len(results) == 1 else {"results": [r.model_dump(mode="json") for r in results]}, True)
        return
    from enofctl.cli.display import out

    for i, (title, header, rows) in enumerate(tables(results)):
        if i < 2 or not quiet:
            out.print(_table(title, header, rows))
    if report is not None and not quiet:
        err.print(f"report written to {report}/")


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
