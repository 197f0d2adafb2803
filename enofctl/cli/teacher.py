"""`enofctl teacher train|fetch`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from enofctl.cli import options as o
from enofctl.cli.display import emit, progress

app = typer.Typer(help="Make the ANN teacher: train one here, or fetch pretrained timm weights.",
                  no_args_is_help=True)


def _result_json(res) -> dict:
    return {"artifact": str(res.path), "kind": res.manifest.kind, "metrics": res.manifest.metrics}


@app.command("train")
def train(
    out: o.Out,
    dataset: o.Dataset = "digits",
    model: Annotated[str | None, typer.Option(help="Any timm CNN [default: a small ResNet for the dataset]")] = None,
    width: Annotated[float | None, typer.Option(min=0.01, help="Channel width multiplier (resnet20/19).")] = None,
    model_arg: Annotated[list[str] | None, typer.Option(help="Extra timm.create_model KEY=VALUE.")] = None,
    init: Annotated[Path | None, typer.Option(help="Start from this teacher artifact's weights.")] = None,
    act: Annotated[o.Act, typer.Option(help="Activation: relu, or for CQ conversion clamp (to [0,1]), cq "
                                       "(clamp + quantize) or qcfs (learnable clip).")] = o.Act.relu,
    levels: Annotated[int | None, typer.Option(min=1, max=1024, help="Quantization levels Q for --act cq/qcfs "
                                               "(convert at T = Q).")] = None,
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
    download: o.Download = False,
    limit_train: o.LimitTrain = None,
    limit_test: o.LimitTest = None,
    resume: o.Resume = False,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Train a timm CNN teacher with SGD/AdamW and a cosine schedule."""
    from enofctl.models.acts import ActSpec
    from enofctl.stages import TeacherConfig, train_teacher

    kwargs = o.parse_kv(model_arg)
    if width is not None:
        kwargs["width"] = width
    cfg = TeacherConfig(
        dataset=dataset, data_dir=str(data_dir) if data_dir else None, download=download, model=model,
        model_kwargs=kwargs, init=str(init) if init else None, act=ActSpec(kind=act.value, levels=levels),
        batch_size=batch_size,
        optimizer=optimizer.value, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
        augment=augment, autoaugment=autoaugment, cutout=cutout, val_fraction=val_fraction, amp=amp,
        seed=seed, device=device.value, limit_train=limit_train, limit_test=limit_test,
        **({"epochs": epochs} if epochs else {}), **({"lr": lr} if lr else {}),
    )
    with progress(quiet or json_, "teacher") as cb:
        res = train_teacher(cfg, out, resume=resume, progress=cb)
    emit(_result_json(res), json_, str(res.path))


@app.command("fetch")
def fetch(
    model: Annotated[str, typer.Argument(help="timm model name, e.g. resnet18")],
    out: o.Out,
    checkpoint: Annotated[Path | None, typer.Option(help="Local weights (.safetensors or torch "
                                                       "checkpoint); without it, the Hugging Face hub.")] = None,
    dataset: o.Dataset = "cifar10",
    model_arg: Annotated[list[str] | None, typer.Option(help="Extra timm.create_model KEY=VALUE.")] = None,
    data_dir: o.DataDir = None,
    download: o.Download = False,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Fetch a pretrained timm model as a teacher, re-headed to the dataset's classes when they differ."""
    from enofctl.stages import FetchConfig, fetch_teacher

    cfg = FetchConfig(model=model, checkpoint=str(checkpoint) if checkpoint else None, dataset=dataset,
                      data_dir=str(data_dir) if data_dir else None, download=download,
                      model_kwargs=o.parse_kv(model_arg))
    res = fetch_teacher(cfg, out)
    emit(_result_json(res), json_, str(res.path))
