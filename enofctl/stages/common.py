"""What the training stages share: the recipe config, the optimizer and schedule, the epoch loop with
atomic per-epoch checkpoints (``--resume``), a validation pass that keeps the best epoch's weights, mixed
precision on CUDA, accuracy evaluation, and progress events."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

from enofctl.data import Augment, Data, DatasetInfo, normalize, split_validation
from enofctl.distributed import barrier, broadcast_buffers, device_for, sum_all, world
from enofctl.errors import TrainingError, UsageError


class TrainConfig(BaseModel):
    """The training recipe shared by `teacher train` and `distill`."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0, description="not applied to norm weights and biases")
    warmup_epochs: int = Field(0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    augment: bool = Field(True, description="random crop and horizontal flip (as the dataset allows)")
    autoaugment: bool = Field(False, description="torchvision's CIFAR-10 AutoAugment policy, per image (RGB data)")
    cutout: int = Field(0, ge=0, description="Cutout square side in pixels, filled with the mean (0 = off)")
    val_fraction: float = Field(0.0, ge=0, lt=1, description="hold out this fraction of the training set "
                                "(stratified, fixed by the seed); keep the best validation epoch's weights")
    amp: bool = Field(False, description="bfloat16 autocast for the training forward pass (CUDA only)")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    limit_train: int | None = Field(None, ge=1, description="use only this many training samples (smoke runs)")
    limit_test: int | None = Field(None, ge=1, description="test on the first N test samples only (CPU-budget "
                                   "runs; the recorded accuracy then covers only those)")
    sync_bn: bool = Field(False, description="SyncBatchNorm across ranks under torchrun (CUDA)")


@dataclass
class Progress:
    """A progress event: ``step`` of ``steps`` in ``epoch`` of ``epochs``; ``metrics`` after an epoch."""

    stage: str
    epoch: int
    epochs: int
    step: int
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)


ProgressFn = Callable[[Progress], None]


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
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
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
    """The history row of the first epoch with the highest validation top-1 (None without validation)."""
    rows = [r for r in history if r.get("val_top1") is not None]
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
        k1, k5 = topk_correct(model(x), y)
        c1, c5, n = c1 + k1, c5 + k5, n + len(y)
    c1, c5, n = sum_all([c1, c5, n], device)
    return {"top1": c1 / max(n, 1), "top5": c5 / max(n, 1), "samples": int(n)}


# ----------------------------------------------------------------------------------------------------------

StepLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def fit(
    stage: str,
    model: nn.Module,
    step_loss: StepLoss,
    data: Data,
    cfg: TrainConfig,
    device: torch.device,
    mean, std,
    out: Path,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place for ``cfg.epochs`` epochs; returns the per-epoch history.

    ``step_loss(net, x, y)`` runs ``net`` (the model, or its DDP wrapper under torchrun) and returns
    (loss, logged terms); with ``cfg.amp`` it runs under bfloat16 autocast. After each epoch the validation
    split (``cfg.val_fraction``; see ``split_validation``) and the test split are evaluated and a checkpoint
    is written atomically beside ``out`` (removed when training ends), so an interrupted run continues with
    ``resume=True`` from the last finished epoch. With validation, ``model`` ends with the weights of the
    first epoch with the highest validation top-1 (``best_epoch(history)``), kept across a resume.
    """
    w = world()
    check_recipe(cfg, device, data.info)
    if cfg.val_fraction and data.val is None:  # the stages split before, so the full set can be freed
        data = split_validation(data, cfg.val_fraction, cfg.seed)
    augment = Augment(crop_flip=cfg.augment, autoaugment=cfg.autoaugment, cutout=cfg.cutout)
    gen = seed_everything(cfg.seed)
    if cfg.sync_bn and w.size > 1:
        if device.type != "cuda":
            raise UsageError("--sync-bn needs CUDA devices")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model
    if w.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(model, cfg)
    steps = n_batches(data.train, cfg.batch_size * w.size, cfg.limit_train, drop_last=True)
    sched = cosine_with_warmup(opt, cfg.epochs * steps, cfg.warmup_epochs * steps)
    history: list[dict[str, float]] = []
    best: dict | None = None  # {"epoch", "val_top1", "model": weights on the CPU} of the best epoch so far
    start = 0
    ckpt = checkpoint_path(out)
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if state.get("stage") != stage:
            raise UsageError(f"{ckpt} belongs to a {state.get('stage')} run, not {stage}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history, start, best = state["history"], state["epoch"], state.get("best")
    for epoch in range(start, cfg.epochs):
        model.train()
        t0, sums, seen = time.perf_counter(), {}, 0
        it = batches_on(data.train, device, mean, std, batch_size=cfg.batch_size, shuffle=True,
                        augment=augment,
                        generator=gen, limit=cfg.limit_train, drop_last=True, shard=w.shard)
        for step, (x, y) in enumerate(it):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                loss, terms = step_loss(net, x, y)
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss at epoch {epoch + 1}, step {step + 1}; lower --lr "
                                    "(the last good checkpoint is kept)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            for k, v in {"loss": loss.item(), **terms}.items():
                sums[k] = sums.get(k, 0.0) + v * len(y)
            seen += len(y)
            if progress and w.main:
                progress(Progress(stage, epoch + 1, cfg.epochs, step + 1, steps))
        broadcast_buffers(model)  # evaluate (and save) the same model on every rank
        *totals, seen = sum_all([*sums.values(), seen], device)
        row = {"epoch": epoch + 1, **{k: v / max(seen, 1) for k, v in zip(sums, totals, strict=True)}}
        for name, split in (("val", data.val), ("test", data.test)):
            if split is not None:
                limit = cfg.limit_test if name == "test" else None
                row.update({f"{name}_{k}": v for k, v in accuracy(model, split, device, mean, std, limit=limit,
                                                                  shard=w.shard).items() if k != "samples"})
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if data.val is not None and (best is None or row["val_top1"] > best["val_top1"]):
            best = {"epoch": epoch + 1, "val_top1": row["val_top1"],
                    "model": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
        if w.main:
            _save_checkpoint(ckpt, {
                "stage": stage, "epoch": epoch + 1, "history": history, "model": model.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "best": best,
            })
        barrier()
        if progress and w.main:
            progress(Progress(stage, epoch + 1, cfg.epochs, steps, steps, metrics=row))
    if best is not None:
        model.load_state_dict(best["model"])
    return history


def finish_checkpoint(out: Path) -> None:
    checkpoint_path(out).unlink(missing_ok=True)
