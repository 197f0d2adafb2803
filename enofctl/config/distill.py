"""The config of `distill` (`DistillConfig`) and its recipe presets (`RECIPES`, `with_recipe`), without torch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from enofctl.config.train import TrainConfig
from enofctl.errors import UsageError
from enofctl.schema import NeuronSpec


class DistillConfig(TrainConfig):
    epochs: int = Field(30, ge=1)
    lr: float = Field(0.05, gt=0)
    T: int | None = Field(None, ge=1, le=1024, description="time steps; None = the student's T (4 if converted)")
    laf_lambda: float = Field(0.1, ge=0, description="weight of L_AF (authors' code: 0.1; paper unconfirmed)")
    laf_tau: float = Field(20.0, gt=0, description="L_AF temperature (authors' code: 20; paper unconfirmed)")
    kd_alpha: float = Field(0.0, ge=0, le=1, description="logit KD weight: (1 - a) * CE + a * KD (0 = off)")
    kd_tau: float = Field(4.0, gt=0, description="logit KD temperature (unconfirmed; a common default)")
    act_reg: float = Field(0.0, ge=0, description="weight of the firing-rate regularizer (0 = off)")
    act_reg_kind: Literal["l1", "l2"] = Field("l1", description="penalize each layer's mean rate or its square")
    act_reg_weights: dict[str, float] = Field(default_factory=dict, description="per-layer factors (default 1)")
    logit_reg: float = Field(0.0, ge=0, description="weight of the L2 logits regularizer (Louis et al.: 0.01)")
    neuron: NeuronSpec = Field(default_factory=NeuronSpec, description="used when converting the teacher")
    repact: bool = Field(True, description="used when converting the teacher")
    reconstruct: int = Field(200, ge=0, le=1_000_000, description="when converting the teacher with calibration: "
                             "then this many surrogate-gradient steps towards the teacher on the calibration images "
                             "(convert --reconstruct; 0 = off)")
    calibrate: int = Field(8, ge=0, le=100_000, description="when converting the teacher: batches of training "
                           "images to calibrate the student on first (0 = the plain copy)")
    bn: Literal["batch", "frozen"] = Field(
        "batch", description="BatchNorm while training: 'batch' normalizes with each batch's statistics and "
        "updates the running ones (the usual); 'frozen' keeps the running statistics the student was converted "
        "(and calibrated) with, training only the scale and shift")
    init: Literal["teacher", "scratch"] = Field(
        "teacher", description="the student's start when converting: 'teacher' = the teacher's weights (and "
        "calibration); 'scratch' = the teacher's architecture freshly initialized, BatchNorm included, no "
        "calibration, the teacher used only for the losses (the EnOF authors' code)")
    data_dir: str | None = None
    download: bool = Field(False, description="let torchvision download the dataset")


# Recipe presets: config overrides, applied under the options given explicitly (`with_recipe`).
RECIPES: dict[str, dict[str, Any]] = {
    # the EnOF authors' group's CIFAR recipe (yfguo91/MPBN; docs/ablate.md): from scratch, Dspike, L_AF and RepAct.
    # Cutout's side (16, DeVries & Taylor's CIFAR-10 value) is unconfirmed for their code; their AvgDown
    # shortcut, zero-initialized bn2 and BatchNorm3d over time are not part of the preset.
    "enof-cifar": {
        "epochs": 400, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
        "batch_size": 128, "warmup_epochs": 0, "augment": True, "autoaugment": True, "cutout": 16,
        "init": "scratch", "neuron": {"surrogate": "dspike", "alpha": None}, "laf_tau": 20.0, "laf_lambda": 0.1,
        "repact": True,
    },
}


def with_recipe(name: str | None, fields: dict[str, Any], given: set[str] = frozenset()) -> dict[str, Any]:
    """``fields`` (DistillConfig keyword arguments) with the preset ``name``'s values, except those in
    ``given`` (explicitly chosen: they override the preset). A nested preset entry (``neuron``) is merged
    per sub-field, ``given`` naming them ``neuron.surrogate``. ``name`` None: ``fields``."""
    if name is None:
        return fields
    if name not in RECIPES:
        raise UsageError(f"--recipe {name}: unknown recipe; recipes: {', '.join(RECIPES)}")
    out = dict(fields)
    for key, value in RECIPES[name].items():
        if isinstance(value, dict):
            base = out.get(key)
            base = base.model_dump() if isinstance(base, BaseModel) else dict(base or {})
            out[key] = {**base, **{k: v for k, v in value.items() if f"{key}.{k}" not in given}}
        elif key not in given:
            out[key] = value
    return out
