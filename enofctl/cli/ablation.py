"""`enofctl ablate`. The stages (and torch) are imported when the command runs, not here."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from enofctl.cli import groups as g
from enofctl.cli import options as o
from enofctl.cli.display import MAIN_RANK, cell_progress, emit
from enofctl.config import AblateConfig, DistillConfig

ABLATE = g.ABLATE


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
    recipe_preset: o.Recipe = None,
    *,
    recipe: g.AblateRecipe,
    laf: g.Laf,
    weights: g.ActivityGrid,
    start: g.Start,
    neuron: o.Neuron,
    data_dir: o.DataDir = None,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Reproduce the papers' ablations from one teacher: same budget and seeds for every cell; each variant's
    mean with its confidence interval, and each ingredient's paired difference with a verdict (docs/ablate.md)."""
    if not 0 < ci < 1:
        raise typer.BadParameter(f"{ci} is not a confidence level in (0, 1), e.g. 0.95", param_hint="--ci")
    fields = dict(**recipe, **laf, **start, neuron=neuron, data_dir=o.path_str(data_dir))
    train = DistillConfig(**o.recipe_fields(ctx, recipe_preset, fields))
    cfg = AblateConfig(grid=grid.value, T=o.parse_int_list(T), seeds=o.parse_int_list(seeds, "--seeds", lo=0),
                       train=train, ci=ci, variants=o.parse_name_list(variants, "--variants"), **weights)
    from enofctl.report import write_ablation
    from enofctl.stages.ablate import ablate as run  # torch: only once the options are sound
    from enofctl.stages.ablate import seed_warning
    from enofctl.stages.progress import StageWarning

    few = seed_warning(cfg.seeds)
    if few and MAIN_RANK:
        print(f"enofctl: warning: {few}", file=sys.stderr)  # now, not after the run
    with cell_progress(quiet or json_, "ablate") as on_cell, warnings.catch_warnings():
        warnings.simplefilter("ignore", StageWarning)  # the seed warning: shown above
        result = run(cfg, teacher, out, on_cell=on_cell)
    write_ablation(result, out)
    emit(result, json_, str(out / "ablation.md"))


def register(app: typer.Typer) -> None:
    app.command("ablate", cls=o.Command)(ablate)
