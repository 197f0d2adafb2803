"""Option aliases and option groups shared by every command, so one option has one name, help and default
everywhere. Defaults are read from the config model each command builds (``defaults(ConvertConfig).T``),
choices from the registry or ``Literal`` they mirror; nothing here repeats a value of the library. Everything
here comes from `enofctl.config` and `enofctl.schema`, which import no torch: ``--help`` and a usage error
never load it."""

from __future__ import annotations

import functools
import inspect
import json
import typing
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from typer.core import TyperCommand, TyperGroup

from enofctl.config import (
    RECIPES,
    AblateConfig,
    CQConvertConfig,
    DistillConfig,
    SurrogateConvertConfig,
    TeacherConfig,
    TrainConfig,
)
from enofctl.schema import ActSpec, NeuronSpec
from enofctl.schema.surrogates import SURROGATE_ALPHAS

M = typing.TypeVar("M", bound=BaseModel)


def _plain_flags(params: list) -> list:
    """Flags (``--json``, ``--augment/--no-augment``, ``--help``) take no value: show no ``<bool>`` type."""
    for p in params:
        if getattr(p, "is_flag", False):
            p.metavar = ""
    return params


class Command(TyperCommand):
    """Every enofctl command: its help shows flags without a value type."""

    def get_params(self, ctx):
        return _plain_flags(super().get_params(ctx))


class PipelineGroup(TyperGroup):
    """A command group whose help lists ``teacher``, the first stage, first (then the order of creation)."""

    def get_params(self, ctx):
        return _plain_flags(super().get_params(ctx))

    def list_commands(self, ctx) -> list[str]:
        return sorted(super().list_commands(ctx), key=lambda name: name != "teacher")


def defaults(model: type[M]) -> M:
    """``model`` with every field at its default (not validated; required fields stay unset)."""
    return model.model_construct()


def choices(name: str, values: Iterable[str]) -> type[Enum]:
    """A ``str`` enum of ``values``: Typer's type for an option with a fixed set of values."""
    return Enum(name, [(v, v) for v in values], type=str)


def literal(model: type[BaseModel], field: str) -> tuple[str, ...]:
    """The values of a config field typed ``Literal[...]``."""
    return typing.get_args(model.model_fields[field].annotation)


Surrogate = choices("Surrogate", SURROGATE_ALPHAS)
Reset = choices("Reset", literal(NeuronSpec, "reset"))
Act = choices("Act", literal(ActSpec, "kind"))
Method = choices("Method", literal(SurrogateConvertConfig, "method") + literal(CQConvertConfig, "method"))
Device = choices("Device", literal(TrainConfig, "device"))
Optim = choices("Optim", literal(TrainConfig, "optimizer"))
Grid = choices("Grid", literal(AblateConfig, "grid"))
InitFrom = choices("InitFrom", literal(DistillConfig, "init"))
RecipeName = choices("RecipeName", RECIPES)

Out = Annotated[Path, typer.Option("--out", "-o", help="Artifact to write (.safetensors); written atomically.")]
Dataset = Annotated[str, typer.Option(help="Dataset name (see `enofctl datasets`).")]
def existing_dir(value: Path | None) -> Path | None:
    """A folder option that must exist: refused, never looked for elsewhere."""
    if value is not None and not value.is_dir():
        what = "not a directory" if value.exists() else "no such directory (for --download, create it first)"
        raise typer.BadParameter(f"{value}: {what}")
    return value


DataDir = Annotated[Path | None, typer.Option(help="Where the dataset's files are (an existing folder).",
                                              callback=existing_dir,
                                              show_default="the dataset's usual place, or the artifact's")]
LimitTrain = Annotated[int | None, typer.Option(min=1, help="Train on one fixed, stratified subset of N training "
                                                "samples, drawn once with the run's seed and the same every epoch (the "
                                                "manifest records its size, seed and sha256).",
                                                show_default="all")]
LimitTest = Annotated[int | None, typer.Option(min=1, help="Test on the first N test samples only (per-epoch and "
                                               "final accuracy; CPU-budget runs).", show_default="all")]
WORKERS = defaults(TrainConfig).workers  # this machine's: the cores this process may use but one, at most 8
Workers = Annotated[int, typer.Option(min=0, help="Processes that decode image folders (imagefolder) while the "
                                      "model computes; 0 = this one. In-memory datasets need none.",
                                      show_default=f"{WORKERS} here: the cores this process may use but one, at "
                                      "most 8")]
WarmupSteps = Annotated[int, typer.Option(min=0, help="Linear learning-rate warm-up over N steps (added to "
                                          "--warmup-epochs'); for a fine-tune from a calibrated start.")]
BnRecompute = Annotated[int, typer.Option(min=0, help="After each epoch, recompute BatchNorm's running "
                                          "statistics over N batches of training samples, augmented as in training "
                                          "(precise BN), so the network evaluated and saved is the trained one; "
                                          "0 = keep the moving averages. BatchNorm frozen at a student's "
                                          "calibrated statistics is left as it is.")]
Download = Annotated[bool, typer.Option("--download", help="Let torchvision download the dataset.")]
Epochs = Annotated[int, typer.Option(min=1, help="Training epochs.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Batch size.")]
def positive(value: float | None) -> float | None:
    """An option that must be above 0 (its help says "> 0"; click's ranges can only show ">= 0")."""
    if value is not None and not value > 0:  # NaN too
        raise typer.BadParameter(f"{value} is not greater than 0")
    return value


Lr = Annotated[float, typer.Option(callback=positive, help="Peak learning rate (> 0).")]
Optimizer = Annotated[Optim, typer.Option(help="Optimizer.")]
WeightDecay = Annotated[float, typer.Option(min=0.0, help="Weight decay (not on norm weights and biases).")]
Warmup = Annotated[int, typer.Option(min=0, help="Linear warm-up epochs before the cosine schedule.")]
Seed = Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed.")]
AugmentOpt = Annotated[bool, typer.Option("--augment/--no-augment",
                                          help="Random crop and horizontal flip (as the dataset allows).")]
AutoAugmentOpt = Annotated[bool, typer.Option("--autoaugment/--no-autoaugment", help="torchvision's CIFAR-10 "
                                              "AutoAugment policy, drawn per training image (RGB datasets only).")]
Cutout = Annotated[int, typer.Option(min=0, help="Cutout: blank a random SxS square of each training image "
                                     "(to the mean); 0 = off (DeVries & Taylor: 16 on CIFAR-10, 8 on CIFAR-100).")]
ValFraction = Annotated[float, typer.Option(min=0.0, max=0.9, help="Hold out this fraction of the training set "
                                            "(per class, fixed by the seed), validate each epoch and keep the best "
                                            "epoch's weights; 0 = off.")]
Amp = Annotated[bool, typer.Option("--amp", help="Mixed precision: bfloat16 autocast on CUDA (compute "
                                   "capability 8.0+); a usage error elsewhere.")]
DeviceOpt = Annotated[Device, typer.Option(help="Where to compute.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")]
EvalLimitTest = Annotated[int | None, typer.Option(min=1, help="Evaluate on the first N test samples only "
                                                   "(quick looks).", show_default="all")]
LimitDeprecated = Annotated[int | None, typer.Option("--limit", min=1, hidden=True,
                                                     help="Deprecated name of --limit-test.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
T = Annotated[int, typer.Option("--T", min=1, max=1024, help="Time steps.")]
OptT = Annotated[int | None, typer.Option("--T", min=1, max=1024, help="Time steps.",
                                            show_default="the student's, or 4")]
Decay = Annotated[float, typer.Option(min=0.0, max=1.0, help="LIF membrane decay per step (1 = no leak).")]
Vth = Annotated[float, typer.Option("--v-th", callback=positive, help="Firing threshold (> 0).")]
ResetOpt = Annotated[Reset, typer.Option(help="Reset after a spike: hard (to 0) or soft (subtract v_th).")]
SurrogateOpt = Annotated[Surrogate, typer.Option(help="Surrogate gradient of the spike.")]
SurrogateAlpha = Annotated[float | None, typer.Option(min=0.0, help="Surrogate sharpness/width.",
                                                      show_default="the surrogate's own")]
VInit = Annotated[float, typer.Option(min=0.0, max=1.0, help="Initial membrane as a fraction of the threshold "
                                      "(0.5 with --decay 1 --v-th 1 --reset soft: the neuron a --act cq teacher "
                                      "converts to at T = its levels).")]
RepAct = Annotated[bool, typer.Option("--repact/--no-repact",
                                      help="Keep the last activation before the classifier as ReLU (RepAct).")]
Init = Annotated[InitFrom, typer.Option(help="The student's start: teacher = the teacher's weights, calibrated; "
                                        "scratch = the teacher's architecture freshly initialized (BatchNorm too), "
                                        "no calibration, the teacher used only for the losses (the paper's "
                                        "setting).")]
Recipe = Annotated[RecipeName | None, typer.Option(
    "--recipe", help="A preset of the paper's recipe: enof-cifar = 400 epochs, SGD lr 0.1, plain momentum 0.9, "
    "wd 1e-4, batch 128, cosine, AutoAugment + Cutout 16, --init scratch, --surrogate dspike, L_AF tau 20 "
    "lambda 0.1, RepAct. Options given explicitly override the preset's values.", show_default="none")]


def given(ctx: typer.Context) -> set[str]:
    """The current command's parameters given on the command line (or by environment), not left at their
    defaults: what overrides a --recipe preset."""
    explicit = ("COMMANDLINE", "ENVIRONMENT")
    return {n for n in ctx.params if getattr(ctx.get_parameter_source(n), "name", None) in explicit}


def recipe_fields(ctx: typer.Context, recipe: RecipeName | None, fields: dict[str, Any]) -> dict[str, Any]:
    """DistillConfig keyword arguments: ``fields`` (every option's value) with the preset ``recipe`` applied
    under the options given explicitly (the neuron's as ``neuron.<field>``)."""
    from enofctl.config.distill import with_recipe

    if recipe is None:
        return fields
    neuron = {"decay", "v_th", "reset", "surrogate", "surrogate_alpha", "v_init"}
    named = {"neuron." + ("alpha" if n == "surrogate_alpha" else n) if n in neuron else n for n in given(ctx)}
    if "neuron.surrogate" in named:  # a chosen surrogate keeps its own default sharpness
        named.add("neuron.alpha")
    return with_recipe(recipe.value, fields, named)


# ----------------------------------------------------------------------------------------------------------
# option groups: Typer has none, so a group is a function whose parameters are the options and whose result is
# what the command receives (like a FastAPI dependency); `grouped` splices those options into the command.


class Group:
    """Marks a command parameter, ``Annotated[NeuronSpec, Group(neuron_options)]``, as an option group."""

    def __init__(self, build: Callable[..., Any]):
        self.build = build


def grouped(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with each option-group parameter replaced, in its place, by the options of the group's
    builder; the command is called with the builder's result under the parameter's name."""
    hints = typing.get_type_hints(command, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[Callable[..., Any], list[str]]] = {}
    for p in inspect.signature(command).parameters.values():
        annotation = hints.get(p.name, p.annotation)
        group = next((m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Group)), None)
        if group is None:
            params.append(p.replace(annotation=annotation, kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        options = list(inspect.signature(group.build, eval_str=True).parameters.values())
        groups[p.name] = (group.build, [q.name for q in options])
        params += [q.replace(kind=inspect.Parameter.KEYWORD_ONLY) for q in options]

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        for name, (build, names) in groups.items():
            values[name] = build(**{n: values.pop(n) for n in names})
        return command(**values)

    run.__signature__ = inspect.Signature(params)  # what Typer reads; a name used twice is an error here
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


NEURON = defaults(NeuronSpec)


def neuron_options(
    decay: Decay = NEURON.decay,
    v_th: Vth = NEURON.v_th,
    reset: ResetOpt = Reset(NEURON.reset),
    surrogate: SurrogateOpt = Surrogate(NEURON.surrogate),
    surrogate_alpha: SurrogateAlpha = NEURON.alpha,
    v_init: VInit = NEURON.v_init,
) -> NeuronSpec:
    """The spiking neuron of a student converted from a teacher (validated: e.g. --v-th must be > 0)."""
    return NeuronSpec(decay=decay, v_th=v_th, reset=reset.value, surrogate=surrogate.value, alpha=surrogate_alpha,
                      v_init=v_init)


def recipe_options(stage: type[TrainConfig], without: tuple[str, ...] = ()) -> Callable[..., dict[str, Any]]:
    """The training-recipe options of a stage whose config is ``stage``, with that config's defaults, less the
    options named in ``without`` (e.g. ``seed`` where a command takes ``--seeds``); the builder returns them
    as ``stage`` keyword arguments (validated when the config is built)."""
    d = defaults(stage)

    def options(
        epochs: Epochs = d.epochs,
        batch_size: BatchSize = d.batch_size,
        lr: Lr = d.lr,
        optimizer: Optimizer = Optim(d.optimizer),
        weight_decay: WeightDecay = d.weight_decay,
        warmup_epochs: Warmup = d.warmup_epochs,
        warmup_steps: WarmupSteps = d.warmup_steps,
        augment: AugmentOpt = d.augment,
        autoaugment: AutoAugmentOpt = d.autoaugment,
        cutout: Cutout = d.cutout,
        val_fraction: ValFraction = d.val_fraction,
        amp: Amp = d.amp,
        seed: Seed = d.seed,
        device: DeviceOpt = Device(d.device),
        limit_train: LimitTrain = d.limit_train,
        limit_test: LimitTest = d.limit_test,
        workers: Workers = d.workers,
        bn_recompute: BnRecompute = d.bn_recompute,
    ) -> dict[str, Any]:
        values = dict(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer.value,
                      weight_decay=weight_decay, warmup_epochs=warmup_epochs, warmup_steps=warmup_steps,
                      augment=augment, autoaugment=autoaugment, cutout=cutout, val_fraction=val_fraction, amp=amp,
                      seed=seed, device=device.value, limit_train=limit_train, limit_test=limit_test,
                      workers=workers, bn_recompute=bn_recompute)
        return {k: v for k, v in values.items() if k not in without}

    if without:
        sig = inspect.signature(options, eval_str=True)
        options.__signature__ = sig.replace(parameters=[p for p in sig.parameters.values() if p.name not in without])
    return options


def calibration_count(calibrate: int | None, no_calibrate: bool) -> int | None:
    """The number of calibration batches the user asked for: None = the stage's default, 0 = off."""
    if calibrate is not None and no_calibrate:
        raise typer.BadParameter("give --calibrate N or --no-calibrate, not both", param_hint="--calibrate")
    if calibrate is not None and calibrate < 1:
        raise typer.BadParameter(f"{calibrate} is not a number of batches (N >= 1; --no-calibrate skips "
                                 "calibration)", param_hint="--calibrate")
    return 0 if no_calibrate else calibrate


_CALIBRATE_HELP = "Calibrate on N >= 1 batches of training images (no labels, no gradient step) before training or " \
    "saving: each channel's threshold and spike amplitude are fitted to the teacher"
NoCalibrate = Annotated[bool, typer.Option("--no-calibrate", help="Keep the plain copy of the teacher's weights (no "
                                           "calibration, no data read).")]
StudentCalibrate = Annotated[int | None, typer.Option(
    max=100_000, show_default=str(defaults(SurrogateConvertConfig).calibrate),
    help=f"{_CALIBRATE_HELP}, when the teacher is converted here.")]


def calibration_options(
    calibrate: Annotated[int | None, typer.Option(
        max=100_000, show_default=f"{defaults(SurrogateConvertConfig).calibrate} for surrogate students, off for "
        "--method cq", help=f"{_CALIBRATE_HELP} (surrogate students), or the layer-wise bias (--method cq).")] = None,
    no_calibrate: NoCalibrate = False,
) -> int | None:
    """`convert`'s calibration options (both methods)."""
    return calibration_count(calibrate, no_calibrate)


Neuron = Annotated[NeuronSpec, Group(neuron_options)]
Calibration = Annotated[int | None, Group(calibration_options)]
TeacherRecipe = Annotated[dict, Group(recipe_options(TeacherConfig))]
DistillRecipe = Annotated[dict, Group(recipe_options(DistillConfig))]


# ----------------------------------------------------------------------------------------------------------
# parsing option values


def path_str(path: Path | None) -> str | None:
    return None if path is None else str(path)


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


def int_list(values: list[int]) -> str:
    """A list default shown as the option's text, e.g. ``1,2,4``."""
    return ",".join(map(str, values))


Bins = choices("Bins", ("time", "count"))


def frame_spec(dataset: str, frames: int | None, bins: str, size: int | None):
    """`teacher train`'s event options as a FrameSpec (None for image datasets, where they are refused)."""
    from enofctl.datasets.registry import event_datasets
    from enofctl.errors import UsageError

    EVENT_DATASETS = event_datasets()
    if dataset not in EVENT_DATASETS:
        if frames is not None or size is not None or bins != "time":
            raise UsageError(f"--frames/--bins/--event-size apply to event datasets ({', '.join(EVENT_DATASETS)}), "
                             f"not {dataset}")
        return None
    from enofctl.events import DEFAULT_FRAMES

    spec = DEFAULT_FRAMES[dataset]
    return spec.model_copy(update={"T": frames or spec.T, "bins": bins,
                                   "size": (size, size) if size else spec.size})
