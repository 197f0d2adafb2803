"""The configs of `teacher train` (`TeacherConfig`) and `teacher fetch` (`FetchConfig`), without torch."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from enofctl.config.train import TrainConfig
from enofctl.datasets.registry import registered
from enofctl.schema import ActSpec, FrameSpec

MAX_WIDTH = 16.0  # resnet20 at 16x has 1,024 channels in its last stage; much wider does not fit in memory

# The small ResNet that suits each dataset when --model is not given is registered with the dataset
# (enofctl.datasets.registry, torch-free); this is the view the CLI reads.
DEFAULT_MODELS: dict[str, tuple[str, dict[str, Any]]] = {d.name: d.default_model() for d in registered()}


class TeacherConfig(TrainConfig):
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    model: str | None = Field(None, description="any timm model name; None = the dataset's default")
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra timm.create_model kwargs")
    init: str | None = Field(None, description="start from this teacher artifact's weights")
    act: ActSpec = Field(default_factory=ActSpec, description="activation: relu, clamp, cq or qcfs (CQ training)")
    qcfs_clip: Literal["fit", "fixed"] = Field(
        "fit", description="--init from a ReLU teacher with --act qcfs: fit = each QCFS clip starts where it "
        "quantizes that layer's ReLU outputs with the least squared error (4 training batches); fixed = QCFS's "
        "own start, 8")
    for_snn: bool = Field(True, description="before training, check that the teacher can become a spiking "
                          "student (its activations can spike; no clamped residual network)")
    frames: FrameSpec | None = Field(None, description="event datasets: frames per sample, binning and size "
                                     "(None: the dataset's default); the teacher averages its logits over them")
    image_size: int | None = Field(None, ge=8, le=1024, description="imagefolder: the side its images are "
                                   "resized to (None: 224), recorded as the model's input size")

    @field_validator("model_kwargs")
    @classmethod
    def _recordable(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        from enofctl.config.model_kwargs import check_recorded_kwargs

        if kwargs:
            check_recorded_kwargs(kwargs)  # a UsageError: numbers only, never a file, URL or hub id
        return kwargs


class FetchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    checkpoint: str | None = Field(None, description=".safetensors or torch checkpoint; None = the hub")
    dataset: str = "digits"  # as teacher train's
    data_dir: str | None = None
    download: bool = False
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    evaluate: bool = Field(True, description="measure test accuracy when the dataset is available")
