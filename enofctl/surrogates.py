"""Surrogate gradients of a spike: d spike / d x at x = u - v_th, each with its default sharpness/width ``alpha``.

The functions are what `enofctl.spiking.neuron.SpikeFn` differentiates with; their names and default alphas are
part of the manifest schema and live without torch in `enofctl.schema.surrogates` (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from enofctl.schema.surrogates import SURROGATE_ALPHAS, SurrogateName

__all__ = ["SURROGATES", "SURROGATE_ALPHAS", "SurrogateName"]


def _rect(x: torch.Tensor, a: float) -> torch.Tensor:
    return (x.abs() < a / 2).to(x.dtype) / a


def _triangle(x: torch.Tensor, a: float) -> torch.Tensor:
    return (a - x.abs()).clamp(min=0) / (a * a)


def _sigmoid(x: torch.Tensor, a: float) -> torch.Tensor:
    s = torch.sigmoid(a * x)
    return a * s * (1 - s)


def _atan(x: torch.Tensor, a: float) -> torch.Tensor:
    return (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)


def _tanh(x: torch.Tensor, a: float) -> torch.Tensor:
    # tanh-shaped, sharpness a = 3: the derivative of (1 + tanh(a x)) / 2, which integrates to 1 over the real
    # line. Not Dspike: it has no window (nonzero everywhere) and peaks at a / 2 = 1.5; `dspike` is the
    # authors' group's surrogate.
    return (a / 2) * (1 - torch.tanh(a * x) ** 2)


def _dspike(x: torch.Tensor, a: float) -> torch.Tensor:
    # Dspike as in the authors' group's code (yfguo91/MPBN), temperature a = 3: with u = x + 0.5 (the membrane
    # when v_th = 0.5), the derivative of tanh(a (clamp(u, 0, 1) - 0.5)) / (2 tanh(a / 2)) + 0.5, i.e.
    #     a (1 - tanh(a x)^2) / (2 tanh(a / 2))  for |x| < 0.5, else 0 (torch.clamp's gradient is 0 at its bounds);
    # peak 3 / (2 tanh 1.5) = 1.66 at x = 0; it integrates to 1. The window is one unit wide around the
    # threshold whatever v_th is: u in [v_th - 0.5, v_th + 0.5] (with v_th = 0.5 exactly the formula's [0, 1]).
    inside = (x.abs() < 0.5).to(x.dtype)
    return inside * (a / (2 * math.tanh(a / 2))) * (1 - torch.tanh(a * x) ** 2)


_FUNCTIONS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "rect": _rect, "triangle": _triangle, "sigmoid": _sigmoid, "atan": _atan, "tanh": _tanh, "dspike": _dspike,
}
assert list(_FUNCTIONS) == list(SURROGATE_ALPHAS), "a surrogate without its default alpha, or the reverse"

SURROGATES: dict[str, tuple[Callable[[torch.Tensor, float], torch.Tensor], float]] = {
    name: (fn, SURROGATE_ALPHAS[name]) for name, fn in _FUNCTIONS.items()
}
