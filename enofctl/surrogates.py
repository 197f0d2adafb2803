"""Surrogate gradients of a spike: d spike / d x at x = u - v_th, each with its default sharpness/width ``alpha``.

A leaf module (torch only): the registry's names are part of the manifest schema (`enofctl.schema`), the
functions are what `enofctl.spiking.neuron.SpikeFn` differentiates with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch


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
    # tanh-shaped surrogate of the EnOF code ("Dspike"-like), sharpness a = 3: the derivative of
    # (1 + tanh(a x)) / 2, which integrates to 1 over the real line.
    return (a / 2) * (1 - torch.tanh(a * x) ** 2)


SURROGATES: dict[str, tuple[Callable[[torch.Tensor, float], torch.Tensor], float]] = {
    "rect": (_rect, 1.0),
    "triangle": (_triangle, 1.0),
    "sigmoid": (_sigmoid, 4.0),
    "atan": (_atan, 2.0),
    "tanh": (_tanh, 3.0),
}

# the names a spec, the CLI and the docs accept: the registry's keys
SurrogateName = Literal[tuple(SURROGATES)]  # type: ignore[valid-type]
