"""torch.distributed, when the process was started by torchrun (WORLD_SIZE > 1); a no-op otherwise.

gloo on CPU, NCCL on CUDA. Each rank trains on its shard of every epoch's shuffled order (the same seeded
permutation on every rank, split by rank), gradients are averaged by DDP, metrics are summed across ranks,
and only rank 0 writes artifacts, checkpoints and logs. The effective batch is ``batch_size * world``; the
learning rate is used as given (scale it yourself, e.g. linearly with the world size).

The stages go through `Ranks`, the one object that knows about ranks: DDP wrapping and SyncBN, buffer
broadcast, all-reduce and "rank 0 writes". The functions below are its single-purpose parts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn

from enofctl.errors import UsageError
from enofctl.torchrun import Launch, launch

F = TypeVar("F", bound=Callable)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return (self.rank, self.size)


def world(backend: str | None = None, here: Launch | None = None) -> World:
    """This process's place; initializes the process group on first call under torchrun (``backend``: gloo
    or nccl for the device this rank computes on; None = nccl where CUDA is available; ``here``: torchrun's
    environment, read now when not given)."""
    here = here or launch()
    if not here.distributed:
        return World()
    if not dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        backend = "gloo" if os.environ.get("ENOFCTL_DIST_BACKEND") == "gloo" else backend
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size(), here.local_rank)


def device_for(w: World, device: torch.device) -> torch.device:
    """Under torchrun on CUDA, each rank takes its local GPU."""
    if device.type == "cuda" and w.size > 1:
        torch.cuda.set_device(w.local_rank)
        return torch.device("cuda", w.local_rank)
    return device


def sum_all(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over ranks (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics drift apart by each rank's last batch)."""
    if dist.is_available() and dist.is_initialized():
        for buf in model.buffers():
            dist.broadcast(buf, 0)


@dataclass(frozen=True)
class Ranks:
    """Everything a stage needs to know about ranks, in one place: DDP wrapping and SyncBN, giving every rank
    rank 0's buffers, summing metrics over ranks, and "rank 0 writes, the others wait". Without torchrun
    (one process) each of them is the plain single-process thing."""

    device: torch.device
    world: World = field(default_factory=World)

    @classmethod
    def here(cls, device: torch.device) -> Ranks:
        return cls(device, world())

    @property
    def main(self) -> bool:
        return self.world.main

    @property
    def shard(self) -> tuple[int, int]:
        return self.world.shard

    @property
    def size(self) -> int:
        return self.world.size

    def wrap(self, model: nn.Module, sync_bn: bool = False) -> tuple[nn.Module, nn.Module]:
        """``(model, net)``: the model (with SyncBatchNorm if asked, under torchrun) and what the training
        step calls: its DistributedDataParallel wrapper under torchrun, the model itself otherwise."""
        if self.size == 1:
            return model, model
        if sync_bn:
            if self.device.type != "cuda":
                raise UsageError("--sync-bn needs CUDA devices")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return model, DistributedDataParallel(model, device_ids=ids)

    def sum(self, values: list[float]) -> list[float]:
        return sum_all(values, self.device)

    def sync_buffers(self, model: nn.Module) -> None:
        broadcast_buffers(model)

    def on_main(self, write: Callable[[], object]) -> None:
        """Rank 0 calls ``write`` (saves a file); every rank then waits for it."""
        if self.main:
            write()
        barrier()

    def main_only(self, fn: F | None) -> F | None:
        """``fn`` on rank 0 (e.g. a progress callback), None on the others."""
        return fn if self.main else None
