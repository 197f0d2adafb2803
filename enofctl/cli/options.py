"""Option aliases shared by every command, so one option has one name, help and default everywhere."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from enofctl.spiking import NeuronSpec


class Surrogate(str, Enum):
    rect = "rect"
    triangle = "triangle"
    sigmoid = "sigmoid"
    atan = "atan"
    tanh = "tanh"


class Act(str, Enum):
    relu = "relu"
    clamp = "clamp"
    cq = "cq"
    qcfs = "qcfs"


class Method(str, Enum):
    surrogate = "surrogate"
    cq = "cq"


class Reset(str, Enum):
    hard = "hard"
    soft = "soft"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Optim(str, Enum):
    sgd = "sgd"
    adamw = "adamw"


Out = Annotated[Path, typer.Option("--out", "-o", help="Artifact to write (.safetensors); written atomically.")]
Dataset = Annotated[str, typer.Option(help="Dataset name (see `enofctl datasets`).")]
DataDir = Annotated[Path | None, typer.Option(help="Where the dataset's files are.")]
LimitTrain = Annotated[int | None, typer.Option(min=1, help="Train on the first N samples only.")]
LimitTest = Annotated[int | None, typer.Option(min=1, help="Test on the first N test samples only (per-epoch and "
                                               "final accuracy; CPU-budget runs).")]
Download = Annotated[bool, typer.Option("--download", help="Let torchvision download the dataset.")]
Epochs = Annotated[int | None, typer.Option(min=1, help="Training epochs [default: the stage's].")]
BatchSize = Annotated[int, typer.Option(min=1, help="Batch size.")]
Lr = Annotated[float | None, typer.Option(min=0.0, help="Peak learning rate [default: the stage's].")]
Optimizer = Annotated[Optim, typer.Option(help="Optimizer.")]
WeightDecay = Annotated[float, typer.Option(min=0.0, help="Weight decay (not on norm weights and biases).")]
Warmup = Annotated[int, typer.Option(min=0, help="Linear warm-up epochs before the cosine schedule.")]
Seed = Annotated[int, typer.Option(help="Random seed.")]
AugmentOpt = Annotated[bool, typer.Option("--augment/--no-augment",
                                          help="Random crop and horizontal flip (as the dataset allows).")]
AutoAugmentOpt = Annotated[bool, typer.Option("--autoaugment", help="torchvision's CIFAR-10 AutoAugment policy, "
                                              "drawn per training image (RGB datasets only).")]
Cutout = Annotated[int, typer.Option(min=0, help="Cutout: blank a random SxS square of each training image "
                                     "(to the mean); 0 = off (DeVries & Taylor: 16 on CIFAR-10, 8 on CIFAR-100).")]
ValFraction = Annotated[float, typer.Option(min=0.0, max=0.9, help="Hold out this fraction of the training set "
                                            "(per class, fixed by --seed), validate each epoch and keep the best "
                                            "epoch's weights; 0 = off.")]
Amp = Annotated[bool, typer.Option("--amp", help="Mixed precision: bfloat16 autocast on CUDA (compute "
                                   "capability 8.0+); a usage error elsewhere.")]
DeviceOpt = Annotated[Device, typer.Option(help="Where to compute.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")]
Limit = Annotated[int | None, typer.Option(min=1, help="Use only the first N samples (quick looks).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
T = Annotated[int, typer.Option("--T", min=1, max=1024, help="Time steps.")]
OptT = Annotated[int | None, typer.Option("--T", min=1, max=1024,
                                            help="Time steps [default: the student's, or 4].")]
Decay = Annotated[float, typer.Option(min=0.0, max=1.0, help="LIF membrane decay per step (1 = no leak).")]
Vth = Annotated[float, typer.Option("--v-th", min=0.0, help="Firing threshold.")]
ResetOpt = Annotated[Reset, typer.Option(help="Reset after a spike: hard (to 0) or soft (subtract v_th).")]
SurrogateOpt = Annotated[Surrogate, typer.Option(help="Surrogate gradient of the spike.")]
SurrogateAlpha = Annotated[float | None, typer.Option(min=0.0, help="Surrogate sharpness/width "
                                                         "[default: the surrogate's own].")]
VInit = Annotated[float, typer.Option(min=0.0, max=1.0, help="Initial membrane as a fraction of the threshold "
                                      "(0.5 with --decay 1 --v-th 1 --reset soft: the neuron a --act cq teacher "
                                      "converts to at T = its levels).")]
RepAct = Annotated[bool, typer.Option("--repact/--no-repact",
                                      help="Keep the last activation before the classifier as ReLU (RepAct).")]


def neuron_spec(decay: float, v_th: float, reset: Reset, surrogate: Surrogate, alpha: float | None,
                v_init: float = 0.0) -> NeuronSpec:
    return NeuronSpec(decay=decay, v_th=v_th, reset=reset.value, surrogate=surrogate.value, alpha=alpha,
                      v_init=v_init)


def parse_kv(items: list[str] | None, name: str = "--model-arg") -> dict:
    """``KEY=VALUE`` pairs; values are read as JSON when they parse (numbers, booleans), else as strings."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=name)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_name_list(text: str | None, name: str) -> list[str] | None:
    if text is None:
        return None
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise typer.BadParameter(f"{text!r}: give at least one name", param_hint=name)
    return values


def parse_int_list(text: str | None, name: str = "--T", lo: int = 1) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of integers", param_hint=name) from None
    if not values or any(v < lo or v > 1024 for v in values):
        raise typer.BadParameter(f"{text!r}: each value must be in {lo}..1024", param_hint=name)
    return values
