"""Option groups of the student commands (`convert`, `distill`, `ablate`, `eval`): each is a builder whose
parameters are the options and whose result is what the command receives (see `options.grouped`), so an
option shared by two commands is declared once, with one help text and the config's default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from enofctl.cli import options as o
from enofctl.config import AblateConfig, CQConvertConfig, DistillConfig, EvalConfig, SurrogateConvertConfig
from enofctl.schema.report import Gates

CONVERT, CQ, DISTILL = o.defaults(SurrogateConvertConfig), o.defaults(CQConvertConfig), o.defaults(DistillConfig)
ABLATE, EVAL = o.defaults(AblateConfig), o.defaults(EvalConfig)
ActRegKind = o.choices("ActRegKind", o.literal(DistillConfig, "act_reg_kind"))
BnMode = o.choices("BnMode", o.literal(DistillConfig, "bn"))


def laf_options(
    laf_lambda: Annotated[float, typer.Option(min=0.0, help="Weight of L_AF; 0 = plain CE (authors' code: 0.1; "
                                              "paper value unconfirmed).")] = DISTILL.laf_lambda,
    laf_tau: Annotated[float, typer.Option(min=0.0, help="L_AF temperature (authors' code: 20; paper value "
                                           "unconfirmed).")] = DISTILL.laf_tau,
) -> dict[str, Any]:
    """EnOF's L_AF (`distill`; in `ablate`, where a cell uses it)."""
    return dict(laf_lambda=laf_lambda, laf_tau=laf_tau)


def regularizer_options(
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
) -> dict[str, Any]:
    """`distill`'s logit KD and activity regularizers."""
    return dict(kd_alpha=kd_alpha, kd_tau=kd_tau, act_reg=act_reg, act_reg_kind=act_reg_kind.value,
                act_reg_weights=o.parse_kv(act_reg_weight, "--act-reg-weight"), logit_reg=logit_reg)


def activity_grid_options(
    kd_alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="KD weight in the activity grid.")] = (
        ABLATE.kd_alpha),
    act_reg: Annotated[float, typer.Option(min=0.0, help="Activation-regularizer weight (activity grid).")] = (
        ABLATE.act_reg),
    logit_reg: Annotated[float, typer.Option(min=0.0, help="Logits-regularizer weight (activity grid).")] = (
        ABLATE.logit_reg),
) -> dict[str, Any]:
    """The weights `ablate`'s activity grid switches on, cell by cell."""
    return dict(kd_alpha=kd_alpha, act_reg=act_reg, logit_reg=logit_reg)


def start_options(
    init: o.Init = o.InitFrom(DISTILL.init),
    bn: Annotated[BnMode, typer.Option(help="BatchNorm while training: batch = each batch's statistics, the "
                                       "running ones updated; frozen = the running statistics the student was "
                                       "converted and calibrated with kept, only scale and shift train.")] = (
        BnMode(DISTILL.bn)),
    reconstruct: Annotated[int, typer.Option(min=0, max=1_000_000, help="When converting with calibration: then "
                                             "N surrogate-gradient steps towards the teacher on the calibration "
                                             "images (as convert --reconstruct); 0 = off.")] = DISTILL.reconstruct,
    calibrate: o.StudentCalibrate = None,
    no_calibrate: o.NoCalibrate = False,
) -> dict[str, Any]:
    """How a command that converts the teacher itself (`distill` without --student, `ablate`) starts and keeps
    its student: DistillConfig keyword arguments."""
    count = o.calibration_count(calibrate, no_calibrate)
    return dict(init=init.value, bn=bn.value, reconstruct=reconstruct,
                **({"calibrate": count} if count is not None else {}))


def cq_options(
    weight_bits: Annotated[int | None, typer.Option(min=2, max=32, help="cq: round weights to n-bit fixed "
                                                    "point.", show_default="off")] = CQ.weight_bits,
    weight_norm: Annotated[bool, typer.Option("--weight-norm/--no-weight-norm", help="cq + --weight-bits: "
                                              "normalize each layer by its max |w| first.")] = CQ.weight_norm,
    spiking_pool: Annotated[bool, typer.Option("--spiking-pool", help="cq: an IF neuron after each average "
                                               "pool.")] = CQ.spiking_pool,
    norm_percentile: Annotated[float | None, typer.Option(help="cq + --calibrate: thresholds of ReLU "
                                                          "activations = this percentile of the ANN's (e.g. "
                                                          "99.9); lets a ReLU teacher convert. No-op for "
                                                          "CQ/QCFS/clamp.", show_default="off")] = CQ.norm_percentile,
) -> dict[str, Any]:
    """`convert --method cq`'s options; only the ones given (not at their defaults) are returned."""
    if norm_percentile is not None and not 0 < norm_percentile <= 100:
        raise typer.BadParameter(f"{norm_percentile} is not a percentile in (0, 100]", param_hint="--norm-percentile")
    values = dict(weight_bits=weight_bits, weight_norm=weight_norm, spiking_pool=spiking_pool,
                  norm_percentile=norm_percentile)
    return {k: v for k, v in values.items() if v != getattr(CQ, k)}


def fit_options(
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
) -> dict[str, Any]:
    """How `convert` fits a surrogate student to its teacher (with --calibrate)."""
    return dict(percentile=percentile, readout_ridge=readout_ridge, reconstruct=reconstruct,
                reconstruct_lr=reconstruct_lr, fold=fold, bn_reestimate=bn_reestimate)


def gate_options(
    min_top1: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Gate: exit 3 if a top-1 (fraction) "
                                                   "is below this.", show_default="off")] = None,
    max_spikes_per_sample: Annotated[float | None, typer.Option(min=0.0, help="Gate: exit 3 if a student "
                                                                "emits more spikes per sample.",
                                                                show_default="off")] = None,
    max_energy_ratio: Annotated[float | None, typer.Option(min=0.0, help="Gate: exit 3 if a student's energy "
                                                           "relative to its ANN is above this.",
                                                           show_default="off")] = None,
) -> Gates:
    """`eval`'s gates: a CI job fails (exit 3) when a result crosses one."""
    return Gates(min_top1=min_top1, max_spikes_per_sample=max_spikes_per_sample, max_energy_ratio=max_energy_ratio)


def eval_data_options(
    dataset: Annotated[str | None, typer.Option(help="Evaluate on this dataset instead of the artifact's.",
                                                show_default="the artifact's")] = None,
    data_dir: o.DataDir = None,
    download: o.Download = EVAL.download,
    device: o.DeviceOpt = o.Device(EVAL.device),
    workers: o.Workers = EVAL.workers,
    batch_size: o.BatchSize = EVAL.batch_size,
    e_mac: Annotated[float, typer.Option(min=0.0, help="Energy per multiply-accumulate, pJ.")] = EVAL.e_mac,
    e_ac: Annotated[float, typer.Option(min=0.0, help="Energy per accumulate, pJ.")] = EVAL.e_ac,
) -> dict[str, Any]:
    """Where and how `eval` measures: EvalConfig keyword arguments."""
    return dict(dataset=dataset, data_dir=o.path_str(data_dir), download=download, device=device.value,
                workers=workers, batch_size=batch_size, e_mac=e_mac, e_ac=e_ac)


Laf = Annotated[dict, o.Group(laf_options)]
Regularizers = Annotated[dict, o.Group(regularizer_options)]
ActivityGrid = Annotated[dict, o.Group(activity_grid_options)]
Start = Annotated[dict, o.Group(start_options)]
CQOptions = Annotated[dict, o.Group(cq_options)]
Fit = Annotated[dict, o.Group(fit_options)]
GateOptions = Annotated[Gates, o.Group(gate_options)]
EvalData = Annotated[dict, o.Group(eval_data_options)]
AblateRecipe = Annotated[dict, o.Group(o.recipe_options(DistillConfig, without=("seed",)))]
TeacherPath = Annotated[Path, typer.Option(help="Teacher artifact (frozen; guides the student through L_AF).")]
