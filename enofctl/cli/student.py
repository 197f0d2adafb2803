"""`enofctl convert` and `enofctl distill`. The stages (and torch) are imported when a command runs, not here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from enofctl import signals
from enofctl.cli import options as o
from enofctl.cli.display import emit, progress, warnings_to_stderr
from enofctl.config import CQConvertConfig, DistillConfig, SurrogateConvertConfig, convert_config
from enofctl.schema import NeuronSpec

CONVERT, CQ, DISTILL = o.defaults(SurrogateConvertConfig), o.defaults(CQConvertConfig), o.defaults(DistillConfig)
ActRegKind = o.choices("ActRegKind", o.literal(DistillConfig, "act_reg_kind"))
BnMode = o.choices("BnMode", o.literal(DistillConfig, "bn"))


@o.grouped
def convert(
    teacher: Annotated[Path, typer.Argument(help="Teacher artifact.")],
    out: o.Out,
    T: o.T = CONVERT.T,
    method: Annotated[o.Method, typer.Option(help="surrogate: LIF skeleton to train with `distill`; cq: "
                                             "integrate-and-fire conversion of a CQ/QCFS teacher.")] = (
        o.Method(CONVERT.method)),
    weight_bits: Annotated[int | None, typer.Option(min=2, max=32, help="cq: round weights to n-bit fixed "
                                                    "point.", show_default="off")] = CQ.weight_bits,
    weight_norm: Annotated[bool, typer.Option("--weight-norm/--no-weight-norm", help="cq + --weight-bits: "
                                              "normalize each layer by its max |w| first.")] = CQ.weight_norm,
    spiking_pool: Annotated[bool, typer.Option("--spiking-pool", help="cq: an IF neuron after each average "
                                               "pool.")] = CQ.spiking_pool,
    percentile: Annotated[float, typer.Option(min=0.0, max=100.0, help="surrogate + --calibrate: thresholds are "
                                              "searched as multiples of this percentile of each channel's input "
                                              "(unconfirmed default).")] = CONVERT.percentile,
    readout_ridge: Annotated[float, typer.Option(min=0.0, help="surrogate + --calibrate: refit the student's "
                                                 "classifier to the teacher's logits, ridge regression towards "
                                                 "the teacher's weights with this strength.")] = (
        CONVERT.readout_ridge),
    reconstruct: Annotated[int, typer.Option(min=0, max=1_000_000, help="surrogate + --calibrate: then N "
                                             "surrogate-gradient steps on the calibration images pulling each "
                                             "neuron's output and the logits towards the teacher's (no labels); "
                                             "0 = off.")] = CONVERT.reconstruct,
    reconstruct_lr: Annotated[float, typer.Option(help="surrogate + --reconstruct: Adam's learning rate "
                                                  "(> 0, <= 1).")] = CONVERT.reconstruct_lr,
    fold: Annotated[bool, typer.Option("--fold/--no-fold", help="surrogate + --calibrate: fold each channel's "
                                       "threshold and amplitude into the weights (one threshold, spikes of 1; "
                                       "an identity shortcut may carry a per-channel factor); --no-fold keeps "
                                       "them as per-channel buffers.")] = CONVERT.fold,
    bn_reestimate: Annotated[bool, typer.Option("--bn-reestimate/--no-bn-reestimate", help="surrogate + "
                                                "--calibrate: recompute each BatchNorm's statistics under the "
                                                "calibrated layers before it.")] = CONVERT.bn_reestimate,
    norm_percentile: Annotated[float | None, typer.Option(help="cq + --calibrate: thresholds of ReLU "
                                                          "activations = this percentile of the ANN's (e.g. "
                                                          "99.9); lets a ReLU teacher convert. No-op for "
                                                          "CQ/QCFS/clamp.", show_default="off")] = CQ.norm_percentile,
    batch_size: Annotated[int, typer.Option(min=1, help="Calibration batch size.")] = CONVERT.batch_size,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Which training images calibrate (seeded "
                                      "shuffle).")] = CONVERT.seed,
    data_dir: Annotated[Path | None, typer.Option(help="Calibration data: where the teacher's dataset's files "
                                                  "are.", show_default="as the teacher was trained")] = None,
    device: Annotated[o.Device, typer.Option(help="Where calibration computes.")] = o.Device(CONVERT.device),
    repact: o.RepAct = CONVERT.repact,
    *,
    neuron: o.Neuron,
    calibrate: o.Calibration = None,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """ANN teacher -> spiking student: a LIF skeleton for `distill`, or (--method cq) an IF network."""
    if norm_percentile is not None and not 0 < norm_percentile <= 100:
        raise typer.BadParameter(f"{norm_percentile} is not a percentile in (0, 100]", param_hint="--norm-percentile")
    common = {"T": T, "batch_size": batch_size, "seed": seed, "data_dir": o.path_str(data_dir),
              "device": device.value, **({"calibrate": calibrate} if calibrate is not None else {})}
    if method.value == "cq":
        _refuse_moved_neuron(neuron, repact, percentile, readout_ridge)
        cfg = convert_config(method="cq", surrogate=neuron.surrogate, alpha=neuron.alpha, weight_bits=weight_bits,
                             weight_norm=weight_norm, spiking_pool=spiking_pool, norm_percentile=norm_percentile,
                             **common)
    else:
        for flag, value in (("--weight-bits", weight_bits), ("--norm-percentile", norm_percentile),
                            ("--spiking-pool", spiking_pool or None)):
            if value is not None:
                raise typer.BadParameter("applies to --method cq only", param_hint=flag)
        cfg = convert_config(method="surrogate", neuron=neuron, repact=repact, percentile=percentile,
                             readout_ridge=readout_ridge, fold=fold, bn_reestimate=bn_reestimate,
                             reconstruct=reconstruct, reconstruct_lr=reconstruct_lr, **common)
    from enofctl.stages import convert as run_convert  # torch: only once the options are sound

    with progress(quiet, "calibrate") as cb:
        res = run_convert(teacher, cfg, out, progress=cb)
    result = {"artifact": str(res.path), "kind": "student", "T": T, "method": method.value,
              "repact": res.manifest.spiking.repact}
    cal = res.manifest.calibration
    if cal is not None and cal.agreement_after is not None:
        result["calibration"] = {"samples": cal.samples, "agreement_before": cal.agreement_before,
                                 "agreement_after": cal.agreement_after}
    met = res.manifest.metrics
    if met.top1 is not None:
        result["metrics"] = met.model_dump()
        if not quiet:
            teacher_top1 = f" (teacher {100 * met.teacher_top1:.2f} %)" if met.teacher_top1 is not None else ""
            print(f"convert: the student scores top-1 {100 * met.top1:.2f} % on {met.samples} test images before "
                  f"training{teacher_top1}", file=sys.stderr)
    emit(result, json_, str(res.path))


def _refuse_moved_neuron(neuron: NeuronSpec, repact: bool, percentile: float, readout_ridge: float) -> None:
    """--method cq fixes its neuron (IF, soft reset, v_init 0.5) and readout: refuse the options it ignores."""
    moved = [f"--{k.replace('_', '-')}" for k, v in neuron.model_dump(exclude={"surrogate", "alpha"}).items()
             if v != NeuronSpec.model_fields[k].default]
    moved += ["--no-repact"] if not repact else []
    moved += ["--percentile"] if percentile != CONVERT.percentile else []
    moved += ["--readout-ridge"] if readout_ridge != CONVERT.readout_ridge else []
    if moved:
        raise typer.BadParameter(f"{', '.join(moved)}: not with --method cq (its integrate-and-fire neuron and "
                                 "readout are fixed)", param_hint="--method")


@o.grouped
def distill(
    ctx: typer.Context,
    teacher: Annotated[Path, typer.Option(help="Teacher artifact (frozen; guides the student through L_AF).")],
    out: o.Out,
    student: Annotated[Path | None, typer.Option(help="Student artifact to train.",
                                                 show_default="convert the teacher")] = None,
    T: o.OptT = DISTILL.T,
    laf_lambda: Annotated[float, typer.Option(min=0.0, help="Weight of L_AF; 0 = plain CE (authors' code: "
                                              "0.1; paper value unconfirmed).")] = DISTILL.laf_lambda,
    laf_tau: Annotated[float, typer.Option(min=0.0, help="L_AF temperature (authors' code: 20; paper value "
                                           "unconfirmed).")] = DISTILL.laf_tau,
    kd_alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Logit KD: (1 - a) * CE + a * KD from the "
                                            "teacher's logits (0 = off).")] = DISTILL.kd_alpha,
    kd_tau: Annotated[float, typer.Option(min=0.0, help="Logit KD temperature (unconfirmed default).")] = (
        DISTILL.kd_tau),
    act_reg: Annotated[float, typer.Option(min=0.0, help="Weight of the firing-rate regularizer (0 = off).")] = (
        DISTILL.act_reg),
    act_reg_kind: Annotated[ActRegKind, typer.Option(help="l1: each layer's mean rate; l2: its square.")] = (
        ActRegKind(DISTILL.act_reg_kind)),
    act_reg_weight: Annotated[list[str] | None, typer.Option(help="Per-layer factor LAYER=W (repeatable).",
                                                             show_default="1 for every layer")] = None,
    logit_reg: Annotated[float, typer.Option(min=0.0, help="Weight of the L2 logits regularizer (0 = off).")] = (
        DISTILL.logit_reg),
    repact: o.RepAct = DISTILL.repact,
    init: o.Init = o.InitFrom(DISTILL.init),
    recipe_preset: o.Recipe = None,
    bn: Annotated[BnMode, typer.Option(help="BatchNorm while training: batch = each batch's statistics, the "
                                       "running ones updated; frozen = the running statistics the student was "
                                       "converted and calibrated with kept, only scale and shift train.")] = (
        BnMode(DISTILL.bn)),
    reconstruct: Annotated[int, typer.Option(min=0, max=1_000_000, help="When converting with calibration: then "
                                             "N surrogate-gradient steps towards the teacher on the calibration "
                                             "images (as convert --reconstruct); 0 = off.")] = DISTILL.reconstruct,
    *,
    neuron: o.Neuron,
    calibrate: o.StudentCalibration = None,
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
    if init.value == "scratch" and student is not None:
        raise typer.BadParameter("--init scratch builds a fresh student from the teacher's architecture: not with "
                                 "--student", param_hint="--init")
    fields = dict(
        **recipe, T=T, laf_lambda=laf_lambda, laf_tau=laf_tau, repact=repact, kd_alpha=kd_alpha, kd_tau=kd_tau,
        act_reg=act_reg, act_reg_kind=act_reg_kind.value, logit_reg=logit_reg, neuron=neuron, bn=bn.value,
        reconstruct=reconstruct,
        act_reg_weights=o.parse_kv(act_reg_weight, "--act-reg-weight"), data_dir=o.path_str(data_dir),
        **({"calibrate": calibrate} if calibrate is not None else {}),
        download=download, init=init.value,
    )
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
