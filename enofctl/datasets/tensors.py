"""Data held in memory (`TensorSplit`), the data a run is fed (`Data`) and what is done to it before training:
placement on the device (`data_on`), the validation split (`split_validation`), the fixed `--limit-train`
subset (`limit_train`) and normalization of a batch (`normalize`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from enofctl.augment import Augment
from enofctl.datasets.folder import FolderSplit
from enofctl.datasets.registry import DatasetInfo
from enofctl.datasets.workers import default_workers
from enofctl.errors import UsageError
from enofctl.schema import FrameSpec, TrainSubset


class TensorSplit:
    """One split held in memory. ``x``: float [N, C, H, W] in [0, 1]; ``y``: long [N]."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, info: DatasetInfo):
        self.x, self.y, self.info = x, y, info

    def __len__(self) -> int:
        return len(self.y)

    def labels(self) -> torch.Tensor:
        return self.y

    def subset(self, idx: torch.Tensor) -> TensorSplit:
        idx = idx.to(self.x.device)
        return TensorSplit(self.x[idx], self.y[idx], self.info)

    def to(self, device: torch.device) -> TensorSplit:
        """This split held on ``device`` (itself when it already is), copied there once for every pass."""
        x = self.x.to(device)
        return self if x is self.x else TensorSplit(x, self.y.to(device), self.info)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: Augment | None = None,
        generator: torch.Generator | None = None,
        limit: int | None = None,
        shard: tuple[int, int] = (0, 1),
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self) if limit is None else min(limit, len(self))
        order = torch.randperm(len(self), generator=generator)[:n] if shuffle else torch.arange(n)
        rank, world = shard
        order = order[rank::world]
        if drop_last and len(order) > batch_size:  # a small last batch makes BatchNorm's statistics noisy
            order = order[: len(order) - len(order) % batch_size]
        order = order.to(self.x.device)  # the draws stay on the CPU generator: the same order on every device
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            x, y = self.x[idx], self.y[idx]
            if augment is not None:
                x = augment.apply(x, self.info, generator)
            yield x, y


@dataclass
class Data:
    info: DatasetInfo
    train: TensorSplit | FolderSplit
    test: TensorSplit | FolderSplit
    classes: tuple[str, ...]
    val: TensorSplit | FolderSplit | None = None  # carved from the training set by split_validation
    frames: FrameSpec | None = None  # event datasets: how each recording became frames (enofctl.events)
    root: Path | None = None  # event datasets: the folder read (to bin it again at another T)
    train_subset: TrainSubset | None = None  # --limit-train: the fixed subset `train` now is (limit_train)


def split_on(split: TensorSplit | FolderSplit, device: torch.device, workers: int | None = None,
             ) -> TensorSplit | FolderSplit:
    """``split`` ready to feed ``device``: in memory, copied there once (CUDA; it is then indexed and augmented
    there, with the same draws from the CPU generator); an image folder, read by ``workers`` processes (None:
    `default_workers`) into pinned memory when ``device`` is CUDA."""
    if isinstance(split, TensorSplit):
        return split.to(device) if device.type == "cuda" else split
    return split.loading(default_workers() if workers is None else workers, pin_memory=device.type == "cuda")


def data_on(data: Data, device: torch.device, workers: int | None = None) -> Data:
    """``data`` with every split `split_on` ``device``."""
    val = split_on(data.val, device, workers) if data.val is not None else None
    return replace(data, train=split_on(data.train, device, workers), test=split_on(data.test, device, workers),
                   val=val)


def split_validation(data: Data, fraction: float, seed: int) -> Data:
    """Hold out ``fraction`` of the training set for validation: per class (stratified), drawn with its own
    generator seeded by ``seed``, so every rank under torchrun computes the same split and the training
    draws do not change. Every class keeps at least one training image. ``fraction == 0``: ``data``."""
    if not fraction:
        return data
    if data.val is not None:
        raise ValueError("this data already has a validation split")
    labels = data.train.labels()
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in torch.unique(labels):  # sorted
        idx = (labels == c).nonzero().flatten()
        k = min(len(idx) - 1, int(fraction * len(idx) + 0.5))
        held.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    val_idx = torch.cat(held).sort().values
    if len(val_idx) == 0:
        raise UsageError(f"--val-fraction {fraction} of {len(labels)} training images holds none out; "
                         "raise it")
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val_idx] = False
    train_idx = keep.nonzero().flatten()
    return replace(data, train=data.train.subset(train_idx), val=data.train.subset(val_idx))


def stratified_subset(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` of the indices of ``labels``, sorted, drawn once by a generator seeded with ``seed``, per class in
    proportion to its size: each class's indices in a random order, the k-th of a class of size c placed at
    (k + 0.5) / c, and the ``n`` earliest places taken (so every class gets round(n c / N) +- 1)."""
    g = torch.Generator().manual_seed(seed)
    idx, place = [], []
    for c in torch.unique(labels):  # sorted
        members = (labels == c).nonzero().flatten()
        idx.append(members[torch.randperm(len(members), generator=g)])
        place.append((torch.arange(len(members), dtype=torch.float64) + 0.5) / len(members))
    idx_all, place_all = torch.cat(idx), torch.cat(place)
    order = torch.sort(place_all, stable=True).indices[:n]
    return idx_all[order].sort().values


def limit_train(data: Data, n: int | None, seed: int) -> Data:
    """``--limit-train N``: the training split cut once to a fixed, stratified subset of ``n`` samples
    (`stratified_subset` with ``seed``), which every epoch then draws from, recorded as ``data.train_subset``
    (size, seed and the sha256 of the sorted indices). ``n`` None, or at least the split's size: ``data``."""
    if n is None or n >= len(data.train) or data.train_subset is not None:
        return data
    idx = stratified_subset(data.train.labels(), n, seed)
    digest = hashlib.sha256(idx.to(torch.int64).numpy().astype("<i8").tobytes()).hexdigest()
    record = TrainSubset(size=n, of=len(data.train), seed=seed, sha256=digest)
    return replace(data, train=data.train.subset(idx), train_subset=record)


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


