"""`enofctl ablate`. The stages (and torch) are imported when the command runs, not here."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from enofctl.cli import options as o
from enofctl.cli.display import MAIN_RANK, emit, err
from enofctl.cli.student import BnMode
from enofctl.config import AblateConfig, DistillConfig

ABLATE, TRAIN = o.defaults(AblateConfig), o.defaults(DistillConfig)


@o.grouped
def ablate(
    ctx: typer.Context,
    teacher: Annotated[Path, typer.Option(help="Teacher artifact every cell distills from.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for ablation.md/.json/.png and runs/.")],
    grid: Annotated[o.Grid, typer.Option(help="enof: baseline/+L_AF/+RepAct/both at each T; activity: "
                                         "CE/KD/KD+act/KD+logits at the largest T.")] = o.Grid(ABLATE.grid),
    T: Annotated[str, typer.Option("--T", help="Time steps, e.g. 1,2,4.")] = o.int_list(ABLATE.T),
    variants: Annotated[str | None, typer.Option(help="Only these variants, e.g. both or baseline,KD+act.",
                                                 show_default="all of the grid's")] = None,
    seeds: Annotated[str, typer.Option(help="Seeds to repeat each cell with, each once; variants are compared "
                                       "paired on them. Fewer than 5: a warning (1: no interval).")] = (
        o.int_list(ABLATE.seeds)),
    ci: Annotated[float, typer.Option(help="Confidence level of the intervals, in (0, 1).")] = ABLATE.ci,
    epochs: o.Epochs = TRAIN.epochs,
    batch_size: o.BatchSize = TRAIN.batch_size,
    lr: o.Lr = TRAIN.lr,
    laf_lambda: Annotated[float, typer.Option(min=0.0, help="L_AF weight where a cell uses L_AF.")] = TRAIN.laf_lambda,
    laf_tau: Annotated[float, typer.Option(min=0.0, help="L_AF temperature.")] = TRAIN.laf_tau,
    kd_alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="KD weight in the activity grid.")] = (
        ABLATE.kd_alpha),
    act_reg: Annotated[float, typer.Option(min=0.0, help="Activation-regularizer weight (activity grid).")] = (
        ABLATE.act_reg),
    logit_reg: Annotated[float, typer.Option(min=0.0, help="Logits-regularizer weight (activity grid).")] = (
        ABLATE.logit_reg),
    bn: Annotated[BnMode, typer.Option(help="BatchNorm while training each cell (see distill --help).")] = (
        BnMode(TRAIN.bn)),
    init: o.Init = o.InitFrom(TRAIN.init),
    recipe: o.Recipe = None,
    *,
    neuron: o.Neuron,
    calibrate: o.StudentCalibration = None,
    limit_train: o.LimitTrain = TRAIN.limit_train,
    limit_test: Annotated[int | None, typer.Option(min=1, help="Test every cell on the first N test samples only.",
                                                   show_default="the whole test set")] = TRAIN.limit_test,
    device: o.DeviceOpt = o.Device(TRAIN.device),
    workers: o.Workers = TRAIN.workers,
    data_dir: o.DataDir = None,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Reproduce the papers' ablations from one teacher: same budget and seeds for every cell; each variant's
    mean with its confidence interval, and each ingredient's paired difference with a verdict (docs/ablate.md)."""
    if not 0 < ci < 1:
        raise typer.BadParameter(f"{ci} is not a confidence level in (0, 1), e.g. 0.95", param_hint="--ci")
    fields = dict(epochs=epochs, batch_size=batch_size, lr=lr, neuron=neuron, laf_lambda=laf_lambda,
                  laf_tau=laf_tau, device=device.value, data_dir=o.path_str(data_dir),
                  limit_train=limit_train, limit_test=limit_test, workers=workers, bn=bn.value, init=init.value,
                  **({"calibrate": calibrate} if calibrate is not None else {}))
    train = DistillConfig(**o.recipe_fields(ctx, recipe, fields))
    cfg = AblateConfig(grid=grid.value, T=o.parse_int_list(T), seeds=o.parse_int_list(seeds, "--seeds", lo=0),
                       train=train, kd_alpha=kd_alpha, act_reg=act_reg, logit_reg=logit_reg, ci=ci,
                       variants=o.parse_name_list(variants, "--variants"))
    from enofctl.report import write_ablation
    from enofctl.stages.ablate import ablate as run  # torch: only once the options are sound
    from enofctl.stages.ablate import seed_warning
    from enofctl.stages.progress import StageWarning

    few = seed_warning(cfg.seeds)
    if few and MAIN_RANK:
        print(f"enofctl: warning: {few}", file=sys.stderr)  # now, not after the run
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("eta"), TimeRemainingColumn(), console=err, transient=True,
                   disable=quiet or json_ or not MAIN_RANK or not err.is_terminal)
    task = bar.add_task("ablate", total=None)

    def on_cell(i: int, n: int, what: str, seconds: float, eta: float | None) -> None:
        bar.update(task, completed=i, total=n, description=f"cell {min(i + 1, n)}/{n}: {what}")
        if not (quiet or json_) and MAIN_RANK and i < n:
            left = f", about {eta / 60:.1f} min left" if eta is not None else ""
            err.print(f"[dim]ablate[/] cell {i + 1}/{n}: {what}{left}")

    with bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", StageWarning)  # the seed warning: shown above
        result = run(cfg, teacher, out, on_cell=on_cell)
    write_ablation(result, out)
    emit(result, json_, str(out / "ablation.md"))


def register(app: typer.Typer) -> None:
    app.command("ablate", cls=o.Command)(ablate)
