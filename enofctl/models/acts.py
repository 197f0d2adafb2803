"""Activations for conversion-friendly ANNs (CQ training, Yan et al. AAAI 2021; QCFS, Bu et al. ICLR 2022).

- ``clamp``: a = clamp(x, 0, 1), the middle stage of CQ training.
- ``cq``: clamp, then quantize to levels {0, 1/Q, ..., 1} (round, straight-through gradient): what an
  integrate-and-fire neuron with threshold 1 and its membrane started at half the threshold emits in Q steps.
- ``qcfs``: lambda * clamp(floor(x Q / lambda + 1/2) / Q, 0, 1) with a learnable clip lambda per layer.

``apply_act`` swaps every ReLU of a timm model for one of these, so any ReLU CNN can be trained this way.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from enofctl.models.base import replace_module
from enofctl.schema import ActSpec


def _ste(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` in the forward pass, the gradient of ``x`` in the backward pass."""
    return x + (y - x).detach()


class ClampQuant(nn.Module):
    """clamp(x, 0, 1), then (with ``levels``) round to a multiple of 1/levels, straight-through."""

    def __init__(self, levels: int | None = None):
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.clamp(0.0, 1.0)
        if self.levels:
            a = _ste(a, torch.round(a * self.levels) / self.levels)
        return a

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation with a learnable clip ``lambda`` (the SNN threshold)."""

    def __init__(self, levels: int, clip: float = 8.0):  # the QCFS code starts the clip at 8
        super().__init__()
        self.levels = levels
        self.clip = nn.Parameter(torch.tensor(float(clip)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x / self.clip * self.levels + 0.5
        q = _ste(u, torch.floor(u)) / self.levels
        return self.clip * q.clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


BOUNDED = (ClampQuant, QCFS)


def make_act(spec: ActSpec) -> nn.Module:
    if spec.kind == "relu":
        return nn.ReLU()
    if spec.kind == "qcfs":
        return QCFS(spec.levels)
    return ClampQuant(spec.levels if spec.kind == "cq" else None)


def apply_act(model: nn.Module, spec: ActSpec) -> nn.Module:
    """Replace every ReLU (and bounded activation) of ``model`` in place by ``spec``'s activation.

    A QCFS module keeps the clip it replaces when it replaces a QCFS module; ``relu`` turns bounded
    activations back into ReLU and leaves ReLUs alone.
    """
    for name, m in list(model.named_modules()):
        if spec.kind == "relu" and not isinstance(m, BOUNDED):
            continue
        if isinstance(m, (nn.ReLU, nn.ReLU6, *BOUNDED)):
            new = make_act(spec)
            if isinstance(new, QCFS) and isinstance(m, QCFS):
                new = copy.deepcopy(m)
                new.levels = spec.levels
            replace_module(model, name, new)
    return model


def qcfs_mse(a: torch.Tensor, clip: float, levels: int) -> float:
    """Mean squared error between ReLU outputs ``a`` and QCFS(``clip``, ``levels``) of the same inputs."""
    with torch.no_grad():
        return float(((QCFS(levels, clip)(a) - a) ** 2).mean())


def fitted_clip(a: torch.Tensor, levels: int, grid: int = 64) -> float:
    """The QCFS clip (lambda) that quantizes the ReLU outputs ``a`` (a sample of one layer's) with the least
    squared error: searched over ``grid`` fractions of their maximum, the largest one kept on ties. All zero:
    1.0 (any clip gives 0)."""
    top = float(a.max()) if a.numel() else 0.0
    if top <= 0:
        return 1.0
    candidates = [top * (i + 1) / grid for i in range(grid)]
    errors = [qcfs_mse(a, c, levels) for c in candidates]
    best = min(errors)
    return max(c for c, e in zip(candidates, errors, strict=True) if e <= best)
