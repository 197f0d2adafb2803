"""`enofctl teacher train|fetch`. The stages (and torch) are imported when a command runs, not here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from enofctl import signals
from enofctl.cli import options as o
from enofctl.cli.display import emit, progress, warnings_to_stderr
from enofctl.config import DEFAULT_MODELS, MAX_WIDTH, FetchConfig, TeacherConfig
from enofctl.schema import ActSpec

app = typer.Typer(help="Make the ANN teacher: train one here, or fetch pretrained timm weights.",
                  no_args_is_help=True, cls=o.PipelineGroup)


def _result_json(res) -> dict:
    return {"artifact": str(res.path), "kind": res.manifest.kind, "metrics": res.manifest.metrics.model_dump()}


TEACHER, FETCH, ACT = o.defaults(TeacherConfig), o.defaults(FetchConfig), o.defaults(ActSpec)
ModelArg = Annotated[list[str] | None, typer.Option(help="Extra timm.create_model KEY=VALUE (repeatable).")]
_NAME, _KW = DEFAULT_MODELS[TEACHER.dataset]
QcfsClip = o.choices("QcfsClip", o.literal(TeacherConfig, "qcfs_clip"))
DEFAULT_MODEL = f"a small ResNet for the dataset; {TEACHER.dataset}: {_NAME} " + " ".join(
    f"{k} {v}" for k, v in _KW.items())


@app.command("train", cls=o.Command)
@o.grouped
def train(
    out: o.Out,
    dataset: o.Dataset = TEACHER.dataset,
    model: Annotated[str | None, typer.Option(help="Any timm CNN.", show_default=DEFAULT_MODEL)] = None,
    width: Annotated[float | None, typer.Option(min=0.01, max=MAX_WIDTH, help="Channel width multiplier "
                                                "(resnet20/19, vgg7).",
                                                show_default="the model's default, 1.0")] = None,
    model_arg: ModelArg = None,
    init: Annotated[Path | None, typer.Option(help="Start from this teacher artifact's weights.",
                                              show_default="fresh weights")] = None,
    act: Annotated[o.Act, typer.Option(help="Activation: relu, or for CQ conversion clamp (to [0,1]), cq "
                                       "(clamp + quantize) or qcfs (learnable clip).")] = o.Act(ACT.kind),
    levels: Annotated[int | None, typer.Option(min=1, max=1024, help="Quantization levels Q for --act cq/qcfs "
                                               "(convert at T = Q).", show_default="none; needed by "
                                               "--act cq/qcfs")] = ACT.levels,
    qcfs_clip: Annotated[QcfsClip, typer.Option(help="--init from a ReLU teacher with --act qcfs: fit = each "
                                                "clip starts where it quantizes its layer's ReLU outputs best; "
                                                "fixed = QCFS's start, 8.")] = QcfsClip(TEACHER.qcfs_clip),
    for_snn: Annotated[bool, typer.Option("--for-snn/--no-check", help="Before training, check that the "
                                          "teacher can become a spiking student: activations that can spike "
                                          "(not SiLU/GELU), no --act clamp/cq on a residual network.")] = (
        TEACHER.for_snn),
    frames: Annotated[int | None, typer.Option(min=1, max=1024, help="Event datasets: frames per sample "
                                               "(convert/distill --T re-bin).", show_default="the dataset's")] = None,
    bins: Annotated[o.Bins, typer.Option(help="Event datasets: frames of equal time spans or of equal event "
                                         "counts.")] = o.Bins.time,
    event_size: Annotated[int | None, typer.Option(min=1, max=1024, help="Event datasets: scale the sensor "
                                                   "down to NxN pixels (default: the dataset's).")] = None,
    image_size: Annotated[int | None, typer.Option(min=8, max=1024, help="imagefolder: resize its images to NxN "
                                                   "(recorded in the manifest; later stages use it).",
                                                   show_default="224")] = None,
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
                        qcfs_clip=qcfs_clip.value, for_snn=for_snn,
                        frames=o.frame_spec(dataset, frames, bins.value, event_size),
                        image_size=image_size)
    from enofctl.stages import train_teacher  # torch: only once the options are sound
    from enofctl.stages.train_state import checkpoint_path

    signals.keeps_checkpoint(checkpoint_path(Path(out)))  # what an interrupt's line points to
    with progress(quiet, "teacher") as cb, warnings_to_stderr():
        res = train_teacher(cfg, out, resume=resume, progress=cb)
    emit(_result_json(res), json_, str(res.path))


@app.command("fetch", cls=o.Command)
def fetch(
    model: Annotated[str, typer.Argument(help="timm model name, e.g. resnet18")],
    out: o.Out,
    checkpoint: Annotated[Path | None, typer.Option(help="Local weights (.safetensors or torch "
                                                       "checkpoint).", show_default="the Hugging Face hub")] = None,
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
    from enofctl.stages import fetch_teacher  # torch: only once the options are sound

    with warnings_to_stderr():
        res = fetch_teacher(cfg, out)
    emit(_result_json(res), json_, str(res.path))
