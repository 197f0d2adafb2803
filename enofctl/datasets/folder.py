"""An image folder streamed through torchvision (`FolderSplit`), for data too large to hold in memory."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch

from enofctl.augment import Augment
from enofctl.datasets.registry import DatasetInfo
from enofctl.errors import DataError


class EpochBatches:
    """The batch sampler of a FolderSplit's one DataLoader: the batches of the coming pass, drawn by
    ``FolderSplit.batches`` from the run's generator and set here before each pass, so the loader (and its
    persistent workers) lives across epochs while every pass draws exactly what the run's generator says.
    A batch is a list of ``(image index, seed)``; the seed (-1: no augmentation) fixes that image's crop and
    flip wherever it is decoded, so the draws do not depend on the number of workers."""

    def __init__(self):
        self.batches: list[list[tuple[int, int]]] = []

    def set(self, order: torch.Tensor, seeds: torch.Tensor, batch_size: int, drop_last: bool) -> None:
        items = list(zip(order.tolist(), seeds.tolist(), strict=True))
        if drop_last and len(items) > batch_size:
            items = items[: len(items) - len(items) % batch_size]
        self.batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Images:
    """An ImageFolder's images by ``(index, seed)``: the evaluation transform for seed -1, else the training one
    with torch's random state seeded by ``seed`` (and restored after)."""

    def __init__(self, ds, train_tf, eval_tf):
        self.ds, self.train_tf, self.eval_tf = ds, train_tf, eval_tf

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, item: tuple[int, int]):
        i, seed = item
        path, target = self.ds.samples[i]
        img = self.ds.loader(path)
        if seed < 0:
            return self.eval_tf(img), target
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.train_tf(img), target


class FolderSplit:
    """An image folder streamed through torchvision (for data too large to hold in memory): ``workers``
    processes decode it (0: this one), into pinned memory with ``pin_memory`` (CUDA), through one DataLoader
    kept for every pass (its workers persist)."""

    def __init__(self, root: Path, info: DatasetInfo, train: bool, workers: int = 0, pin_memory: bool = False):
        from torchvision import datasets, transforms

        h, w = info.image_size
        self._train_tf = transforms.Compose(
            [transforms.RandomResizedCrop((h, w)), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
        )
        self._eval_tf = transforms.Compose(
            [transforms.Resize(int(h * 256 / 224)), transforms.CenterCrop((h, w)), transforms.ToTensor()]
        )
        self.ds = datasets.ImageFolder(str(root))
        self.classes = tuple(self.ds.classes)
        self.info, self.train, self.workers, self.pin_memory = info, train, workers, pin_memory
        self.index: torch.Tensor | None = None  # the images of ds in this split (None: all)
        self._loader = None
        self._sampler = EpochBatches()

    def __len__(self) -> int:
        return len(self.ds) if self.index is None else len(self.index)

    def labels(self) -> torch.Tensor:
        y = torch.tensor(self.ds.targets, dtype=torch.long)
        return y if self.index is None else y[self.index]

    def subset(self, idx: torch.Tensor) -> FolderSplit:
        part = copy.copy(self)
        part.index = idx if self.index is None else self.index[idx]
        part._loader, part._sampler = None, EpochBatches()  # its own loader
        return part

    def loading(self, workers: int, pin_memory: bool) -> FolderSplit:
        """This split read by ``workers`` processes, pinned or not (itself when it already is)."""
        if (workers, pin_memory) == (self.workers, self.pin_memory):
            return self
        part = copy.copy(self)
        part.workers, part.pin_memory = workers, pin_memory
        part._loader, part._sampler = None, EpochBatches()
        return part

    def loader(self):
        """The split's DataLoader, made on first use and kept (with its workers) for every later pass."""
        from torch.utils.data import DataLoader

        if self._loader is None:
            self._loader = DataLoader(_Images(self.ds, self._train_tf, self._eval_tf), batch_sampler=self._sampler,
                                      num_workers=self.workers, pin_memory=self.pin_memory,
                                      persistent_workers=self.workers > 0)
        return self._loader

    def batches(self, batch_size, *, shuffle=False, augment: Augment | None = None, generator=None, limit=None,
                shard=(0, 1), drop_last=False):
        crop_flip = augment is not None and augment.crop_flip
        on_batch = replace(augment, crop_flip=False) if augment is not None else None  # crop/flip: per image
        n = len(self) if limit is None else min(limit, len(self))
        order = torch.randperm(len(self), generator=generator)[:n] if shuffle else torch.arange(n)
        seeds = torch.randint(0, 2**62, (n,), generator=generator) if crop_flip else torch.full((n,), -1)
        if self.index is not None:
            order = self.index[order]
        self._sampler.set(order[shard[0] :: shard[1]], seeds[shard[0] :: shard[1]], batch_size, drop_last)
        for x, y in _reading(iter(self.loader()), self.ds.root):
            yield (on_batch.apply(x, self.info, generator) if on_batch else x), y


def _reading(batches: Iterator, root: str) -> Iterator:
    """``batches``, with a failure to read or decode an image (also in a DataLoader worker, whose message
    holds the worker's traceback) turned into a one-line DataError."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as e:
            raise DataError(f"cannot read an image under {root}: {_worker_reason(e)}") from e
        yield batch


def _worker_reason(e: Exception) -> str:
    """The original error's last line, e.g. "PIL.UnidentifiedImageError: cannot identify image file 'x.png'"."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(e).__name__


