"""Spiking neurons: a pure step ``(x, v) -> (spk, v')``, its multi-step loop, and a thin module over it.

Dynamics (the EnOF authors' code, with the reset and leak as options):

    u[t]   = decay * v[t-1] + x[t]          v[-1] = 0
    spk[t] = H(u[t] - v_th)                 surrogate gradient in the backward pass
    v[t]   = u[t] * (1 - spk[t])            hard reset   (or u[t] - spk[t] * v_th: soft reset)

``decay = 1`` with a soft reset is the integrate-and-fire neuron used by ANN-to-SNN conversion.
The module sees time folded into the batch (``[T*B, ...]``) like every stateless layer around it, unfolds
to ``[T, B, ...]``, loops over T and folds back. State lives only inside one forward call: there is
nothing to reset between batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field

# ----------------------------------------------------------------------------------------------------------
# surrogate gradients: d spike / d x at x = u - v_th, each with its sharpness/width ``alpha``


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


class SpikeFn(torch.autograd.Function):
    """Heaviside forward, surrogate backward. Input is ``u - v_th``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: str, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate, ctx.alpha = surrogate, alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        fn, _ = SURROGATES[ctx.surrogate]
        return grad * fn(x, ctx.alpha), None, None


# ----------------------------------------------------------------------------------------------------------
# configuration (stored in student manifests)


class NeuronSpec(BaseModel):
    """How a spiking neuron behaves. Defaults are the EnOF authors' code."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["lif", "if"] = "lif"
    decay: float = Field(0.25, ge=0.0, le=1.0, description="membrane leak factor per step (1 = no leak)")
    v_th: float = Field(0.5, gt=0.0, description="firing threshold")
    reset: Literal["hard", "soft"] = "hard"
    surrogate: Literal["rect", "triangle", "sigmoid", "atan", "tanh"] = "triangle"
    alpha: float | None = Field(None, gt=0.0, description="surrogate sharpness/width; None = its default")
    v_init: float = Field(0.0, ge=0.0, le=1.0, description="initial membrane, as a fraction of v_th")

    def surrogate_alpha(self) -> float:
        return self.alpha if self.alpha is not None else SURROGATES[self.surrogate][1]


def neuron_step(x: torch.Tensor, v: torch.Tensor, spec: NeuronSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """One time step: input current ``x`` and membrane ``v`` ([B, ...]) -> (spikes, next membrane)."""
    decay = 1.0 if spec.kind == "if" else spec.decay
    u = decay * v + x
    spk = SpikeFn.apply(u - spec.v_th, spec.surrogate, spec.surrogate_alpha())
    v_next = u * (1.0 - spk) if spec.reset == "hard" else u - spk * spec.v_th
    return spk, v_next


def neuron_multistep(x_seq: torch.Tensor, spec: NeuronSpec, v0: torch.Tensor | None = None) -> torch.Tensor:
    """A whole sequence: ``x_seq`` [T, B, ...] -> spikes [T, B, ...]."""
    v = torch.full_like(x_seq[0], spec.v_init * spec.v_th) if v0 is None else v0
    out = []
    for t in range(x_seq.shape[0]):
        spk, v = neuron_step(x_seq[t], v, spec)
        out.append(spk)
    return torch.stack(out)


class SpikingNeuron(nn.Module):
    """Multi-step neuron in a time-folded network: ``[T*B, ...]`` in, spikes ``[T*B, ...]`` out."""

    def __init__(self, spec: NeuronSpec, T: int = 1):
        super().__init__()
        self.spec, self.T = spec, T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_seq = x.unflatten(0, (self.T, -1))  # [T, B, ...]
        return neuron_multistep(x_seq, self.spec).flatten(0, 1)  # [T*B, ...]

    def extra_repr(self) -> str:
        s = self.spec
        return f"T={self.T}, kind={s.kind}, decay={s.decay}, v_th={s.v_th}, reset={s.reset}, sg={s.surrogate}"
