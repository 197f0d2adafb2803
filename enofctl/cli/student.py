"""`enofctl convert` and `enofctl distill`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from enofctl.cli import options as o
from enofctl.cli.display import emit, progress


def convert(
    teacher: Annotated[Path, typer.Argument(help="Teacher artifact.")],
    out: o.Out,
    T: o.T = 4,
    method: Annotated[o.Method, typer.Option(help="surrogate: LIF skeleton to train with `distill`; cq: "
                                             "integrate-and-fire conversion of a CQ/QCFS teacher.")] = (
        o.Method.surrogate),
    weight_bits: Annotated[int | None, typer.Option(min=2, max=32, help="cq: round weights to n-bit fixed "
                                                    "point.")] = None,
    weight_norm: Annotated[bool, typer.Option("--weight-norm/--no-weight-norm", help="cq + --weight-bits: "
                                              "normalize each layer by its max |w| first.")] = True,
    spiking_pool: Annotated[bool, typer.Option("--spiking-pool", help="cq: an IF neuron after each average "
                                               "pool.")] = False,
    calibrate: Annotated[int | None, typer.Option(min=0, max=100_000, help="Calibrate on N batches of training "
                                                  "images (no labels): surrogate: fit each channel's threshold and "
                                                  "spike amplitude to the teacher [default: 8]; cq: layer-wise bias "
                                                  "calibration [default: 0]. 0 = off (no data needed).")] = None,
    norm_percentile: Annotated[float | None, typer.Option(help="cq + --calibrate: thresholds of ReLU "
                                                          "activations = this percentile of the ANN's (e.g. "
                                                          "99.9); lets a ReLU teacher convert. No-op for "
                                                          "CQ/QCFS/clamp.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Calibration batch size.")] = 128,
    seed: Annotated[int, typer.Option(help="Which training images calibrate (seeded shuffle).")] = 0,
    data_dir: Annotated[Path | None, typer.Option(help="Calibration data: where the teacher's dataset's files "
                                                  "are [default: as the teacher was trained].")] = None,
    device: Annotated[o.Device, typer.Option(help="Where calibration computes.")] = o.Device.auto,
    repact: o.RepAct = True,
    decay: o.Decay = 0.25,
    v_th: o.Vth = 0.5,
    reset: o.ResetOpt = o.Reset.hard,
    surrogate: o.SurrogateOpt = o.Surrogate.triangle,
    surrogate_alpha: o.SurrogateAlpha = None,
    v_init: o.VInit = 0.0,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """ANN teacher -> spiking student: a LIF skeleton for `distill`, or (--method cq) an IF network."""
    from enofctl.spiking import NeuronSpec
    from enofctl.stages import convert as run
    from enofctl.stages import convert_config

    if norm_percentile is not None and not 0 < norm_percentile <= 100:
        raise typer.BadParameter(f"{norm_percentile} is not a percentile in (0, 100]", param_hint="--norm-percentile")
    common = {"T": T, "batch_size": batch_size, "seed": seed, "data_dir": str(data_dir) if data_dir else None,
              "device": device.value, **({"calibrate": calibrate} if calibrate is not None else {})}
    neuron = o.neuron_spec(decay, v_th, reset, surrogate, surrogate_alpha, v_init)
    if method is o.Method.cq:
        moved = [f"--{k.replace('_', '-')}" for k, v in neuron.model_dump(exclude={"surrogate", "alpha"}).items()
                 if v != NeuronSpec.model_fields[k].default]
        if moved or not repact:
            raise typer.BadParameter(f"{', '.join(moved) or '--no-repact'} does not apply to --method cq (its "
                                     "integrate-and-fire neuron and readout are fixed)", param_hint="--method")
        cfg = convert_config(method="cq", surrogate=surrogate.value, alpha=surrogate_alpha, weight_bits=weight_bits,
                             weight_norm=weight_norm, spiking_pool=spiking_pool, norm_percentile=norm_percentile,
                             **common)
    else:
        for flag, value in (("--weight-bits", weight_bits), ("--norm-percentile", norm_percentile),
                            ("--spiking-pool", spiking_pool or None)):
            if value is not None:
                raise typer.BadParameter(f"{flag} applies to --method cq", param_hint=flag)
        cfg = convert_config(method="surrogate", neuron=neuron, repact=repact, **common)
    with progress(quiet or json_, "calibrate") as cb:
        res = run(teacher, cfg, out, progress=cb)
    result = {"artifact": str(res.path), "kind": "student", "T": T, "method": method.value,
              "repact": res.manifest.spiking.repact}
    cal = res.manifest.calibration
    if cal is not None and cal.agreement_before is not None:
        result["calibration"] = {"samples": cal.samples, "agreement_before": cal.agreement_before,
                                 "agreement_after": cal.agreement_after}
    emit(result, json_, str(res.path))


def distill(
    teacher: Annotated[Path, typer.Option(help="Teacher artifact (frozen; guides the student through L_AF).")],
    out: o.Out,
    student: Annotated[Path | None, typer.Option(help="Student artifact to train [default: convert "
                                                    "the teacher].")] = None,
    T: o.OptT = None,
    laf_lambda: Annotated[float, typer.Option(min=0.0, help="Weight of L_AF; 0 = plain CE (authors' code: "
                                              "0.1; paper value unconfirmed).")] = 0.1,
    laf_tau: Annotated[float, typer.Option(min=0.0, help="L_AF temperature (authors' code: 20; paper value "
                                           "unconfirmed).")] = 20.0,
    kd_alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="Logit KD: (1 - a) * CE + a * KD from the "
                                            "teacher's logits (0 = off).")] = 0.0,
    kd_tau: Annotated[float, typer.Option(min=0.0, help="Logit KD temperature (unconfirmed default).")] = 4.0,
    act_reg: Annotated[float, typer.Option(min=0.0, help="Weight of the firing-rate regularizer (0 = off).")] = 0.0,
    act_reg_kind: Annotated[str, typer.Option(help="l1: each layer's mean rate; l2: its square.")] = "l1",
    act_reg_weight: Annotated[list[str] | None, typer.Option(help="Per-layer factor LAYER=W (repeatable).")] = None,
    logit_reg: Annotated[float, typer.Option(min=0.0, help="Weight of the L2 logits regularizer (0 = off).")] = 0.0,
    repact: o.RepAct = True,
    calibrate: Annotated[int, typer.Option(min=0, max=100_000, help="When the teacher is converted here: "
                                           "calibrate the student on N batches of training images first "
                                           "(0 = the plain copy).")] = 8,
    decay: o.Decay = 0.25,
    v_th: o.Vth = 0.5,
    reset: o.ResetOpt = o.Reset.hard,
    surrogate: o.SurrogateOpt = o.Surrogate.triangle,
    surrogate_alpha: o.SurrogateAlpha = None,
    v_init: o.VInit = 0.0,
    epochs: o.Epochs = None,
    batch_size: o.BatchSize = 64,
    lr: o.Lr = None,
    optimizer: o.Optimizer = o.Optim.sgd,
    weight_decay: o.WeightDecay = 5e-4,
    warmup_epochs: o.Warmup = 0,
    augment: o.AugmentOpt = True,
    autoaugment: o.AutoAugmentOpt = False,
    cutout: o.Cutout = 0,
    val_fraction: o.ValFraction = 0.0,
    amp: o.Amp = False,
    seed: o.Seed = 0,
    device: o.DeviceOpt = o.Device.auto,
    data_dir: o.DataDir = None,
    limit_train: o.LimitTrain = None,
    limit_test: o.LimitTest = None,
    resume: o.Resume = False,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Train the spiking student with surrogate gradients: CE + lambda * L_AF (EnOF-SNN), optionally logit KD
    and firing-rate / logits regularization (fewer spikes).

    Neuron and RepAct options apply when the teacher is converted here (no --student)."""
    from enofctl.stages import DistillConfig
    from enofctl.stages import distill as run

    cfg = DistillConfig(
        T=T, laf_lambda=laf_lambda, laf_tau=laf_tau, repact=repact, calibrate=calibrate, kd_alpha=kd_alpha,
        kd_tau=kd_tau,
        act_reg=act_reg, act_reg_kind=act_reg_kind, act_reg_weights=o.parse_kv(act_reg_weight, "--act-reg-weight"),
        logit_reg=logit_reg,
        neuron=o.neuron_spec(decay, v_th, reset, surrogate, surrogate_alpha, v_init), batch_size=batch_size,
        optimizer=optimizer.value, weight_decay=weight_decay, warmup_epochs=warmup_epochs, seed=seed,
        augment=augment, autoaugment=autoaugment, cutout=cutout, val_fraction=val_fraction, amp=amp,
        device=device.value, data_dir=str(data_dir) if data_dir else None, limit_train=limit_train,
        limit_test=limit_test,
        **({"epochs": epochs} if epochs else {}), **({"lr": lr} if lr else {}),
    )
    with progress(quiet or json_, "distill") as cb:
        res = run(cfg, teacher, out, student=student, resume=resume, progress=cb)
    emit({"artifact": str(res.path), "kind": "student", "metrics": res.manifest.metrics}, json_, str(res.path))


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
    app.command("distill")(distill)
