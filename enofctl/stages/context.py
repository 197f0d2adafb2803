"""One training run's set-up, built once where the run starts and handed down: the device this process
computes on, its ranks under torchrun, the recipe checked against both and the data, and the data as training
reads it (validation split, ``--limit-train`` subset, on the device).

The stage's file edge (`train_teacher`, `distill`) builds it before any data is read, so a recipe that cannot
work fails first; the core (`teach`, `distill_student`) places the data and `fit` trains on what it is
given. A core called as a library function without a context builds its own."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from enofctl.data import Data, DatasetInfo, data_on, limit_train, split_validation
from enofctl.distributed import Ranks, World, device_for, world
from enofctl.errors import UsageError
from enofctl.torchrun import launch

if TYPE_CHECKING:
    from enofctl.stages.common import TrainConfig


def _device_and_world(name: str) -> tuple[torch.device, World]:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here")
    here = launch()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":  # CUDA only when every local rank gets its own GPU
        name = "cuda" if 0 < here.local_world_size <= gpus else "cpu"
    elif name == "cuda" and here.local_rank >= gpus:
        raise UsageError(f"--device cuda: local rank {here.local_rank} has no GPU ({gpus} visible); "
                         "start at most that many processes per node, or use --device cpu")
    w = world("nccl" if name == "cuda" else "gloo", here)
    return device_for(w, torch.device(name)), w


def resolve_device(name: str) -> torch.device:
    """cpu / cuda / auto; under torchrun on CUDA, this rank's GPU."""
    return _device_and_world(name)[0]


def check_recipe(cfg: TrainConfig, device: torch.device, info: DatasetInfo) -> None:
    """Refuse recipe options that cannot work here (a usage error, before any training)."""
    if cfg.amp and device.type != "cuda":
        raise UsageError(f"--amp needs a CUDA device (this run computes on {device.type}); drop --amp")
    if cfg.amp and torch.cuda.get_device_capability(device) < (8, 0):
        major, minor = torch.cuda.get_device_capability(device)
        raise UsageError(f"--amp uses bfloat16, which needs a GPU of compute capability 8.0 or newer (this one "
                         f"is {major}.{minor}); drop --amp")
    if cfg.autoaugment and info.in_chans != 3:
        raise UsageError(f"--autoaugment applies the CIFAR-10 policy to RGB images; {info.name} images have "
                         f"{info.in_chans} channel(s) (--cutout works on any)")
    if cfg.cutout > max(info.image_size):
        raise UsageError(f"--cutout {cfg.cutout} is larger than the {info.image_size[0]}x{info.image_size[1]} "
                         f"images of {info.name}")


def _facts(info: DatasetInfo) -> tuple:
    """What `check_recipe` reads of a dataset."""
    return info.name, info.in_chans, tuple(info.image_size)


@dataclass(frozen=True)
class RunContext:
    """A training run's recipe (checked), ranks (with the device) and, once placed, its data."""

    cfg: TrainConfig
    ranks: Ranks
    checked: DatasetInfo  # the dataset facts the recipe was checked against
    data: Data | None = None

    @property
    def device(self) -> torch.device:
        return self.ranks.device

    @classmethod
    def build(cls, cfg: TrainConfig, info: DatasetInfo, device: torch.device | None = None) -> RunContext:
        """The device (``cfg.device``, or ``device`` as given), this process's ranks, and ``cfg`` checked
        against them and the dataset ``info`` (`check_recipe`): before any data is read."""
        if device is None:
            device, w = _device_and_world(cfg.device)
            ranks = Ranks(device, w)
        else:
            ranks = Ranks.here(device)
        check_recipe(cfg, ranks.device, info)
        return cls(cfg, ranks, info)

    def placed(self, data: Data) -> RunContext:
        """This context with ``data`` as training reads it: the validation split held out
        (``cfg.val_fraction``, unless it has one), one fixed ``--limit-train`` subset for every epoch, every
        split on the device; what is done already is kept. The recipe is checked again only where ``data``
        differs from the dataset it was checked against in what the check reads (an image folder's size)."""
        cfg = self.cfg
        if _facts(data.info) != _facts(self.checked):
            check_recipe(cfg, self.device, data.info)
        if cfg.val_fraction and data.val is None:
            data = split_validation(data, cfg.val_fraction, cfg.seed)
        data = limit_train(data, cfg.limit_train, cfg.seed)
        return replace(self, checked=data.info, data=data_on(data, self.device, cfg.workers))

    @classmethod
    def of(cls, cfg: TrainConfig, data: Data, device: torch.device | None = None) -> RunContext:
        """`build` and `placed` in one: a run on ``data`` (for library callers of `fit`)."""
        return cls.build(cfg, data.info, device).placed(data)
