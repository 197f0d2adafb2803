"""BatchNorm running statistics recomputed from data ("precise BN", Wu & Johnson 2021, *Rethinking "Batch"
in BatchNorm*): the exact average of the batch statistics over a set of batches, with the weights as they
are now, instead of the exponential moving average training leaves behind.

The moving average (momentum 0.1) starts from mean 0 and variance 1 and forgets with a factor 0.9 per step:
after ``n`` steps a fraction ``0.9 ** n`` of the initial variance is still in it (30 steps: 4 %). On a small
dataset whose activations have a variance of about 0.01, that start dominates: a teacher trained for 30
steps on 400 event recordings scored 10 % with its running statistics and 100 % with recomputed ones.
It also lags behind weights that change fast. Recomputing after every epoch makes the evaluated network the
one training saw (up to the batch-to-population difference).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

__all__ = ["batch_norms", "recompute_bn"]


def batch_norms(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_bn(net: nn.Module, batches: Iterable[torch.Tensor],
                 forward: Callable[[nn.Module, torch.Tensor], object] | None = None) -> int:
    """Every BatchNorm of ``net`` gets as running statistics the cumulative average of its batch statistics over
    ``batches`` (``momentum=None``; the variance is the unbiased one, as BatchNorm keeps it), in place; the
    other layers' modes, the BatchNorm momenta and the autograd state are left as they were. ``forward(net,
    x)`` runs one batch (default ``net(x)``; it may stop part-way: a BatchNorm it does not reach keeps its
    statistics). Returns the number of batches seen (0: nothing changed)."""
    bns = batch_norms(net)
    if not bns:
        return 0
    saved = [(m.momentum, m.training, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    seen = 0
    try:
        for x in batches:
            (forward or (lambda n, b: n(b)))(net, x)
            seen += 1
    finally:
        for m, (momentum, training, mean, var, tracked) in zip(bns, saved, strict=True):
            m.momentum = momentum
            m.train(training)
            if not seen or int(m.num_batches_tracked) == 0:  # not reached (a forward that stops early): kept
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(tracked)
    return seen
