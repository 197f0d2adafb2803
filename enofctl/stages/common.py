"""What the stages share: the training recipe config, progress events, the device, the optimizer and
schedule, accuracy evaluation, the best-epoch bookkeeping of a history, and a core's result.

The epoch loop is in `enofctl.stages.loop`, what its checkpoints hold in `enofctl.stages.train_state`."""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from enofctl import artifacts
from enofctl.data import DatasetInfo, default_workers, normalize
from enofctl.distributed import Ranks, device_for, sum_all, world
from enofctl.errors import TrainingError, UsageError
from enofctl.schema import Manifest
from enofctl.spiking import SpikingNet, logits_of
from enofctl.stages.train_state import finish_checkpoint


class TrainConfig(BaseModel):
    """The training recipe shared by `teacher train` and `distill`. Every number must be finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = Field(True, description="SGD with Nesterov momentum (False: plain momentum, as the EnOF "
                           "authors' code)")
    weight_decay: float = Field(5e-4, ge=0, description="not applied to norm weights and biases")
    warmup_epochs: int = Field(0, ge=0)
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up over this many steps, added to "
                              "warmup_epochs' (a fine-tune from a good start: a fraction of an epoch)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    augment: bool = Field(True, description="random crop and horizontal flip (as the dataset allows)")
    autoaugment: bool = Field(False, description="torchvision's CIFAR-10 AutoAugment policy, per image (RGB data)")
    cutout: int = Field(0, ge=0, description="Cutout square side in pixels, filled with the mean (0 = off)")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="hold out this fraction of the training set "
                                "(stratified, fixed by the seed); keep the best validation epoch's weights")
    amp: bool = Field(False, description="bfloat16 autocast for the training forward pass (CUDA only)")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds Python, NumPy and torch (NumPy takes 32 bits)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    limit_train: int | None = Field(None, ge=1, description="train on one fixed, stratified subset of this many "
                                    "training samples, drawn once with the seed and the same every epoch (smoke "
                                    "runs; the manifest's data.train_subset records it)")
    limit_test: int | None = Field(None, ge=1, description="test on the first N test samples only (CPU-budget "
                                   "runs; the recorded accuracy then covers only those)")
    sync_bn: bool = Field(False, description="SyncBatchNorm across ranks under torchrun (CUDA)")
    eval_before: bool = Field(True, description="evaluate the untrained model before the first step: history "
                              "row 0 (a start for time-to-accuracy curves)")
    workers: int = Field(default_factory=default_workers, ge=0, description="processes that decode image "
                         "folders (0: the training process; in-memory datasets need none); default: the cores this "
                         "process may use but one, at most 8")
    bn_recompute: int = Field(32, ge=0, description="after each epoch, recompute BatchNorm's running statistics "
                              "as the exact average over this many batches of training samples, augmented as "
                              "in training ('precise BN'), so the network evaluated and saved is the one "
                              "trained; 0 = keep the moving averages (which still hold 0.9^steps of their "
                              "start after few steps)")
    log_every: int = Field(50, ge=1, description="read the summed loss back from the device (a synchronization) "
                           "every N steps and at the end of each epoch; a non-finite loss stops the run at the "
                           "next read, at most N - 1 steps late")


@dataclass
class ProgressEvent:
    """What a stage's ``progress`` callback receives: ``step`` of ``steps`` in ``epoch`` of ``epochs`` (1-based)
    of ``stage`` ("teacher-train", "distill", "calibrate", "eval"). After each training step ``metrics`` is
    empty; once an epoch has ended and been evaluated the stage sends one more event with ``step == steps``
    and that epoch's history row as ``metrics`` (``train_loss``, ``test_top1``, ``seconds``, ...). The
    untrained model's evaluation (history row 0) comes as one event with ``epoch == 0``, no steps and the row
    as ``before`` (``metrics`` empty)."""

    stage: str
    epoch: int
    epochs: int
    step: int
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    before: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """How much of the whole run is done, in [0, 1] (for a run-level estimate of the time left)."""
        return min(1.0, max(0.0, (self.epoch - 1 + self.step / max(self.steps, 1)) / max(self.epochs, 1)))


ProgressFn = Callable[[ProgressEvent], None]


class StageWarning(UserWarning):
    """Something a stage did differently from what was asked, without failing (``warnings.warn``): e.g.
    `fetch_teacher` saving a teacher without test accuracy because the dataset is not available here."""


def log_progress(ev: ProgressEvent) -> None:
    """A ready-made ``progress`` callback for library callers: one ``logging`` line (logger ``enofctl``, level
    INFO) for the epoch-0 evaluation and per finished epoch, e.g.
    ``train_teacher(cfg, out, progress=log_progress)``."""
    row = ev.metrics or ev.before
    if row:
        shown = "  ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, (int, float)))
        logging.getLogger("enofctl").info("%s epoch %d/%d%s  %s", ev.stage, ev.epoch, ev.epochs,
                                          "" if ev.metrics else " (before training)", shown)


@dataclass
class Trained:
    """A training core's result: the trained model (a timm ANN or a SpikingNet) and its manifest, not saved."""

    model: nn.Module
    manifest: Manifest

    def weights(self) -> dict[str, torch.Tensor]:
        """The tensors an artifact stores: a student's are its body's (the timm network with neurons)."""
        return (self.model.body if isinstance(self.model, SpikingNet) else self.model).state_dict()


@dataclass
class StageResult:
    """What a stage's file-level function returns: the artifact written and its manifest."""

    path: Path
    manifest: Manifest


def save_trained(out: Path, result: Trained, ranks: Ranks) -> StageResult:
    """Rank 0 writes the artifact and removes the training checkpoint; every rank returns the same result:
    the manifest as written, with its tensors' digest. A model with non-finite weights is not written."""
    check_finite(result.model, "in the trained model")
    weights = result.weights()
    written: list[Manifest] = []

    def write() -> None:
        written.append(artifacts.save(out, result.manifest, weights).manifest)
        finish_checkpoint(out)

    ranks.on_main(write)
    return StageResult(out, written[0] if written else artifacts.seal(result.manifest, weights))


def check_finite(model: nn.Module, when: str) -> None:
    """A TrainingError if a weight or buffer of ``model`` holds NaN or infinity: such a model is never
    checkpointed nor saved."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise TrainingError(f"non-finite weights ({name}) {when}; lower --lr or --weight-decay (the last good "
                                "checkpoint is kept)")


def resolve_device(name: str) -> torch.device:
    """cpu / cuda / auto; under torchrun on CUDA, this rank's GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here")
    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if torchrun else 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0")) if torchrun else 0
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":  # CUDA only when every local rank gets its own GPU
        name = "cuda" if 0 < ranks_here <= gpus else "cpu"
    elif name == "cuda" and local_rank >= gpus:
        raise UsageError(f"--device cuda: local rank {local_rank} has no GPU ({gpus} visible); "
                         "start at most that many processes per node, or use --device cpu")
    return device_for(world("nccl" if name == "cuda" else "gloo"), torch.device(name))


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


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False  # reproducible on CUDA
    return torch.Generator().manual_seed(seed)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights of conv/linear layers only, not on norm weights and biases (ndim <= 1)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def cosine_with_warmup(opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def batches_on(split, device: torch.device, mean, std, **kw) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for x, y in split.batches(**kw):
        x = x.to(device, non_blocking=True)
        yield normalize(x, mean, std), y.to(device, non_blocking=True)


def n_batches(split, batch_size: int, limit: int | None = None, drop_last: bool = False) -> int:
    n = len(split) if limit is None else min(limit, len(split))
    return n // batch_size if drop_last and n > batch_size else math.ceil(n / batch_size)


def topk_correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """How many of the batch are right at top-1 and within the top-5."""
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return int((top[:, 0] == y).sum()), int((top == y[:, None]).any(1).sum())


def best_epoch(history: list[dict]) -> dict | None:
    """The history row of the first trained epoch with the highest validation top-1 (None without validation;
    row 0, the untrained model, is not a candidate)."""
    rows = [r for r in history if r.get("val_top1") is not None and r.get("epoch", 1) >= 1]
    return max(rows, key=lambda r: r["val_top1"]) if rows else None


def best_metrics(history: list[dict]) -> dict[str, float]:
    """``best_epoch`` and ``best_val_top1`` for a manifest's metrics ({} without validation)."""
    row = best_epoch(history)
    return {} if row is None else {"best_epoch": int(row["epoch"]), "best_val_top1": row["val_top1"]}


@torch.no_grad()
def accuracy(model: nn.Module, split, device, mean, std, batch_size: int = 256, limit: int | None = None,
             shard: tuple[int, int] = (0, 1)) -> dict[str, float]:
    """top-1 / top-5 (fractions) and the sample count; with a shard, this rank's part summed over ranks."""
    model.eval()
    c1 = c5 = n = 0
    for x, y in batches_on(split, device, mean, std, batch_size=batch_size, limit=limit, shard=shard):
        k1, k5 = topk_correct(logits_of(model, x), y)
        c1, c5, n = c1 + k1, c5 + k5, n + len(y)
    c1, c5, n = sum_all([c1, c5, n], device)
    return {"top1": c1 / max(n, 1), "top5": c5 / max(n, 1), "samples": int(n)}
