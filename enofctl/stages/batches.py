"""Batches on the device (normalized) and accuracy over them: what training, evaluation and calibration read
a split through."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn as nn

from enofctl.data import normalize
from enofctl.distributed import sum_all
from enofctl.spiking import logits_of


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
