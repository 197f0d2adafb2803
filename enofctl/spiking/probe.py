"""Looking inside a network without changing it: a forward in eval mode that leaves the training mode as it
was, the outputs (or inputs) of chosen modules captured on the way, optionally ending the pass there, and the
time average of a time-folded tensor."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Literal

import torch
import torch.nn as nn


@contextlib.contextmanager
def evaluating(model: nn.Module, no_grad: bool = True) -> Iterator[nn.Module]:
    """Within the block ``model`` is in eval mode (and autograd off unless ``no_grad=False``); on exit,
    exception or not, it is back in the training mode it had on entry."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad() if no_grad else contextlib.nullcontext():
            yield model
    finally:
        model.train(was_training)


class _Stop(Exception):
    """Raised by a capture hook to end a forward pass early (the layers after it are not needed)."""


def capture(net: nn.Module, modules: Mapping[str, nn.Module], x: torch.Tensor, *, stop_after: str | None = None,
            what: Literal["input", "output"] = "output",
            clone: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Run ``net(x)`` and return the first input (``what="input"``) or the output of each of ``modules`` (by
    the given names; detached copies with ``clone``), and the net's output, None when the pass stopped early
    at ``stop_after`` (before that module runs for an input, after it for an output). ``net`` may be any
    callable that runs the modules."""
    got: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(mod, inp, out=None):
            t = inp[0] if what == "input" else out
            got[name] = t.detach().clone() if clone else t
            if name == stop_after:
                raise _Stop

        return fn

    hooks = [m.register_forward_pre_hook(hook(n)) if what == "input" else m.register_forward_hook(hook(n))
             for n, m in modules.items()]
    try:
        out = net(x)
    except _Stop:
        out = None
    finally:
        for h in hooks:
            h.remove()
    return got, out


def time_mean(x: torch.Tensor, T: int) -> torch.Tensor:
    """The mean over the T steps of a time-folded tensor: ``[T*B, ...]`` -> ``[B, ...]``."""
    return x.unflatten(0, (T, -1)).mean(0)
