"""`enofctl teacher train|fetch`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from enofctl.cli import options as o
from enofctl.cli.display import emit, progress
from enofctl.schema import ActSpec
from enofctl.stages import FetchConfig, TeacherConfig, fetch_teacher, train_teacher

app = typer.Typer(help="Make the ANN teacher: train one here, or fetch pretrained timm weights.",
                  no_args_is_help=True)


def _result_json(res) -> dict:
    return {"artifact": str(res.path), "kind": res.manifest.kind, "metrics": res.manifest.metrics.model_dump()}


TEACHER, FETCH, ACT = o.defaults(TeacherConfig), o.defaults(FetchConfig), o.defaults(ActSpec)
ModelArg = Annotated[list[str] | None, typer.Option(help="Extra timm.create_model KEY=VALUE.")]


@app.command("train")
@o.grouped
def train(
    out: o.Out,
    dataset: o.Dataset = TEACHER.dataset,
    model: Annotated[str | None, typer.Option(help="Any timm CNN (default: a small ResNet for the dataset).")] = None,
    width: Annotated[float | None, typer.Option(min=0.01, help="Channel width multiplier (resnet20/19).")] = None,
    model_arg: ModelArg = None,
    init: Annotated[Path | None, typer.Option(help="Start from this teacher artifact's weights.")] = None,
    act: Annotated[o.Act, typer.Option(help="Activation: relu, or for CQ conversion clamp (to [0,1]), cq "
                                       "(clamp + quantize) or qcfs (learnable clip).")] = o.Act(ACT.kind),
    levels: Annotated[int | None, typer.Option(min=1, max=1024, help="Quantization levels Q for --act cq/qcfs "
                                               "(convert at T = Q).")] = ACT.levels,
    frames: Annotated[int | None, typer.Option(min=1, max=1024, help="Event datasets: frames per sample "
                                               "(default: the dataset's; convert/distill --T re-bin).")] = None,
    bins: Annotated[o.Bins, typer.Option(help="Event datasets: frames of equal time spans or of equal event "
                                         "counts.")] = o.Bins.time,
    event_size: Annotated[int | None, typer.Option(min=1, max=1024, help="Event datasets: scale the sensor "
                                                   "down to NxN pixels (default: the dataset's).")] = None,
    *,
    recipe: o.TeacherRecipe,
    data_dir: o.DataDir = None,
    download: o.Download = TEACHER.download,
    resume: o.Resume = False,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Train a timm CNN teacher with SGD/AdamW and a cosine schedule."""
    kwargs = o.parse_kv(model_arg)
    if width is not None:
        kwargs["width"] = width
    cfg = TeacherConfig(**recipe, dataset=dataset, data_dir=o.path_str(data_dir), download=download, model=model,
                        model_kwargs=kwargs, init=o.path_str(init), act=ActSpec(kind=act.value, levels=levels),
                        frames=o.frame_spec(dataset, frames, bins.value, event_size))
    with progress(quiet or json_, "teacher") as cb:
        res = train_teacher(cfg, out, resume=resume, progress=cb)
    emit(_result_json(res), json_, str(res.path))


@app.command("fetch")
def fetch(
    model: Annotated[str, typer.Argument(help="timm model name, e.g. resnet18")],
    out: o.Out,
    checkpoint: Annotated[Path | None, typer.Option(help="Local weights (.safetensors or torch "
                                                       "checkpoint); without it, the Hugging Face hub.")] = None,
    dataset: o.Dataset = FETCH.dataset,
    model_arg: ModelArg = None,
    data_dir: o.DataDir = None,
    download: o.Download = FETCH.download,
    json_: o.Json = False,
    quiet: o.Quiet = False,
) -> None:
    """Fetch a pretrained timm model as a teacher, re-headed to the dataset's classes when they differ."""
    cfg = FetchConfig(model=model, checkpoint=o.path_str(checkpoint), dataset=dataset, data_dir=o.path_str(data_dir),
                      download=download, model_kwargs=o.parse_kv(model_arg))
    res = fetch_teacher(cfg, out)
    emit(_result_json(res), json_, str(res.path))
