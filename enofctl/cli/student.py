"""`enofctl convert` and `enofctl distill`. The stages (and torch) are imported when a command runs, not here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from enofctl import signals
from enofctl.cli import groups as g
from enofctl.cli import options as o
from enofctl.cli.display import emit, progress, warnings_to_stderr
from enofctl.config import DistillConfig, convert_config
from enofctl.schema import NeuronSpec

CONVERT, DISTILL = g.CONVERT, g.DISTILL


@o.grouped
def convert(
    teacher: Annotated[Path, typer.Argument(help="Teacher artifact.")],
    out: o.Out,
    T: o.T = CONVERT.T,
    method: Annotated[o.Method, typer.Option(help="surrogate: LIF skeleton to train with `distill`; cq: "
                                             "integrate-and-fire conversion of a CQ/QCFS teacher.")] = (
        o.Method(CONVERT.method)),
    batch_size: Annotated[int, typer.Option(min=1, help="Calibration batch size.")] = CONVERT.batch_size,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Which training images calibrate (seeded "
                                      "shuffle).")] = CONVERT.seed,
    data_dir: Annotated[Path | None, typer.Option(help="Calibration data: where the teacher's dataset's files "
                                                  "are.", show_default="as the teacher was trained")] = None,
    device: Annotated[o.Device, typer.Option(help="Where calibration computes.")] = o.Device(CONVERT.device),
    repact: o.RepAct = CONVERT.repact,
    *,
    fit: g.Fit,
    cq: g.CQOptions,
    neuron: o.Neuron,
    calibrate: o.Calibration = None,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """ANN teacher -> spiking student: a LIF skeleton for `distill`, or (--method cq) an IF network."""
    common = {"T": T, "batch_size": batch_size, "seed": seed, "data_dir": o.path_str(data_dir),
              "device": device.value, **({"calibrate": calibrate} if calibrate is not None else {})}
    cfg = _convert_config(method.value, common, fit, cq, neuron, repact)
    from enofctl.stages import convert as run_convert  # torch: only once the options are sound

    with progress(quiet, "calibrate") as cb:
        res = run_convert(teacher, cfg, out, progress=cb)
    emit(_convert_result(res, quiet), json_, str(res.path))


def _convert_config(method: str, common: dict, fit: dict, cq: dict, neuron: NeuronSpec, repact: bool):
    """The config of `convert --method METHOD`; options of the other method are refused, not ignored."""
    if method == "cq":
        _refuse_moved_neuron(neuron, repact, fit)
        return convert_config(method="cq", surrogate=neuron.surrogate, alpha=neuron.alpha, **cq, **common)
    for name in cq:  # only those given
        raise typer.BadParameter("applies to --method cq only", param_hint="--" + name.replace("_", "-"))
    return convert_config(method="surrogate", neuron=neuron, repact=repact, **fit, **common)


def _convert_result(res, quiet: bool) -> dict:
    """`convert --json`'s object; the student's accuracy before training, on stderr."""
    m = res.manifest
    result = {"artifact": str(res.path), "kind": "student", "T": m.spiking.T, "method": m.spiking.method,
              "repact": m.spiking.repact}
    cal = m.calibration
    if cal is not None and cal.agreement_after is not None:
        result["calibration"] = {"samples": cal.samples, "agreement_before": cal.agreement_before,
                                 "agreement_after": cal.agreement_after}
    if m.metrics.top1 is not None:
        result["metrics"] = m.metrics.model_dump()
        if not quiet:
            teacher = f" (teacher {100 * m.metrics.teacher_top1:.2f} %)" if m.metrics.teacher_top1 is not None else ""
            print(f"convert: the student scores top-1 {100 * m.metrics.top1:.2f} % on {m.metrics.samples} test "
                  f"images before training{teacher}", file=sys.stderr)
    return result


def _refuse_moved_neuron(neuron: NeuronSpec, repact: bool, fit: dict) -> None:
    """--method cq fixes its neuron (IF, soft reset, v_init 0.5) and readout: refuse the options it ignores."""
    moved = [f"--{k.replace('_', '-')}" for k, v in neuron.model_dump(exclude={"surrogate", "alpha"}).items()
             if v != NeuronSpec.model_fields[k].default]
    moved += ["--no-repact"] if not repact else []
    moved += [f"--{k.replace('_', '-')}" for k in ("percentile", "readout_ridge") if fit[k] != getattr(CONVERT, k)]
    if moved:
        raise typer.BadParameter(f"{', '.join(moved)}: not with --method cq (its integrate-and-fire neuron and "
                                 "readout are fixed)", param_hint="--method")


@o.grouped
def distill(
    ctx: typer.Context,
    teacher: g.TeacherPath,
    out: o.Out,
    student: Annotated[Path | None, typer.Option(help="Student artifact to train.",
                                                 show_default="convert the teacher")] = None,
    T: o.OptT = DISTILL.T,
    repact: o.RepAct = DISTILL.repact,
    recipe_preset: o.Recipe = None,
    *,
    laf: g.Laf,
    regularizers: g.Regularizers,
    start: g.Start,
    neuron: o.Neuron,
    recipe: o.DistillRecipe,
    data_dir: o.DataDir = None,
    download: o.Download = DISTILL.download,
    resume: o.Resume = False,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Train the spiking student with surrogate gradients: CE + lambda * L_AF (EnOF-SNN), optionally logit KD
    and firing-rate / logits regularization (fewer spikes).

    Neuron, RepAct, --init and calibration options apply when the teacher is converted here (no --student).
    --recipe enof-cifar runs the paper's from-scratch recipe; options given with it override its values."""
    if start["init"] == "scratch" and student is not None:
        raise typer.BadParameter("--init scratch builds a fresh student from the teacher's architecture: not with "
                                 "--student", param_hint="--init")
    fields = dict(**recipe, **laf, **regularizers, **start, T=T, repact=repact, neuron=neuron,
                  data_dir=o.path_str(data_dir), download=download)
    cfg = DistillConfig(**o.recipe_fields(ctx, recipe_preset, fields))
    if cfg.init == "scratch" and student is not None:
        raise typer.BadParameter(f"--recipe {recipe_preset.value} trains from scratch (--init scratch): not with "
                                 "--student (give --init teacher to fine-tune it)", param_hint="--student")
    from enofctl.stages import distill as run_distill  # torch: only once the options are sound
    from enofctl.stages.train_state import checkpoint_path

    signals.keeps_checkpoint(checkpoint_path(Path(out)))  # what an interrupt's line points to
    with progress(quiet, "distill") as cb, warnings_to_stderr():
        res = run_distill(cfg, teacher, out, student=student, resume=resume, progress=cb)
    emit({"artifact": str(res.path), "kind": "student", "metrics": res.manifest.metrics.model_dump()}, json_,
         str(res.path))


def register(app: typer.Typer) -> None:
    app.command("convert", cls=o.Command)(convert)
    app.command("distill", cls=o.Command)(distill)
