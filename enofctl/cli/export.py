"""`enofctl export`. The stages (and torch) are imported when the command runs, not here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from enofctl.cli import options as o
from enofctl.cli.display import emit
from enofctl.cli.display import out as console
from enofctl.config import ExportConfig
from enofctl.errors import GateError
from enofctl.schema.export import VerifyResult

EXPORT = o.defaults(ExportConfig)
Format = o.choices("Format", o.literal(ExportConfig, "format"))


def _table(res: VerifyResult) -> Table:
    t = Table(title=f"{res.graph} read back: {res.samples} test images, T = {res.T} (enofctl top-1 "
                    f"{100 * res.top1:.2f} %, {res.spikes:,} spikes)", title_justify="left")
    for col in ("reader", "same prediction %", "top-1 %", "layers with equal spikes", "= BN-folded enofctl",
                "max |logit diff|", "s"):
        t.add_column(col, justify="left" if col == "reader" else "right")
    for r in res.readers:
        if r.error is not None:
            t.add_row(r.reader, "failed", "-", "-", "-", "-", f"{r.seconds:.1f}")
            continue
        t.add_row(r.reader, f"{100 * r.agreement:.2f}", f"{100 * r.top1:.2f}", f"{r.layers_equal}/{len(r.layers)}",
                  "yes" if r.folded_spikes_equal else "no", f"{r.max_logit_diff:.2e}", f"{r.seconds:.1f}")
    return t


def export_cmd(
    student: Annotated[Path, typer.Argument(help="Student artifact (.safetensors).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (e.g. student.nir); written atomically.")],
    format_: Annotated[Format, typer.Option("--format", help="Exchange format: nir (the Neuromorphic "
                                            "Intermediate Representation, HDF5).")] = Format(EXPORT.format),
    sum_pool: Annotated[bool, typer.Option("--sum-pool", help="Average pools as nir.SumPool2d, the 1/k^2 moved "
                                           "into the next layer (more NIR readers take it).")] = EXPORT.sum_pool,
    split_head: Annotated[bool, typer.Option("--split-head", help="RepAct students: the spiking body as NIR, the "
                                             "ReLU + pool + classifier head saved beside it as "
                                             "OUT-STEM.head.safetensors.")] = EXPORT.split_head,
    dt: Annotated[float, typer.Option(min=0.0, help="Seconds per time step the NIR neuron "
                                      "parameters are given for (snnTorch's NIR reader assumes 1e-4).")] = EXPORT.dt,
    verify: Annotated[str | None, typer.Option(help="Read the file back with these readers (comma-separated: "
                                               "snntorch, norse, nirtorch, norse-from_nir), run the test split "
                                               "and compare with enofctl; exit 3 unless every reader gives the "
                                               "same predictions and per-layer spike counts (as enofctl, or as "
                                               "enofctl with BatchNorm folded where that moves a float tie).")] = None,
    limit_test: Annotated[int | None, typer.Option(min=1, help="--verify on the first N test samples only.",
                                                show_default="all")] = None,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Write a student for neuromorphic hardware: a NIR graph (BatchNorm folded, LIF/IF neurons at --dt)."""
    from enofctl.spiking.nir_readers import READERS  # torch: only when the command runs
    from enofctl.stages.export import export, verify_export

    readers = o.parse_name_list(verify, "--verify")
    for r in readers or []:
        if r not in READERS:
            raise typer.BadParameter(f"unknown reader {r!r}; choose from {', '.join(READERS)}", param_hint="--verify")
    cfg = ExportConfig(format=format_.value, sum_pool=sum_pool, split_head=split_head, dt=dt)
    res = export(student, cfg, out)
    if not readers:
        emit(res, json_, res.path)
        return
    check = verify_export(res.path, student, readers, limit=limit_test)
    if json_:
        emit({"export": res.model_dump(mode="json"), "verify": check.model_dump(mode="json")}, True)
    else:
        if not quiet:
            console.print(_table(check))
            for r in check.readers:
                if r.error is not None:
                    console.print(f"{r.reader}: {r.error}", markup=False)
        print(res.path)
    if not check.identical:
        raise GateError(verify_failure(res.path, check))


def verify_failure(path: Path, check: VerifyResult) -> str:
    """The one line for a failed --verify: a reader that could not read or run the file says so (and why);
    only readers that ran are said to differ."""
    failed = [r for r in check.readers if r.error is not None]
    differ = [r.reader for r in check.readers if r.error is None
              and not (r.agreement == 1.0 and (r.spikes_equal or r.folded_spikes_equal))]
    parts = [f"{r.reader} could not read it ({r.error})" for r in failed]
    if differ:
        parts.append(f"read back by {', '.join(differ)}, the predictions or spike counts differ from enofctl's")
    return f"{path}: " + "; ".join(parts)


def register(app: typer.Typer) -> None:
    app.command("export", cls=o.Command)(export_cmd)
