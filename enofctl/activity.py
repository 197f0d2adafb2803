"""Spiking activity by forward hooks: per neuron, the spikes of every spiking layer; per activation module
(spiking or not), its share of zero outputs. What `eval` reports per layer (`LayerActivity`) and what
`export --verify` compares a reader's spike counts with."""

from __future__ import annotations

import torch
import torch.nn as nn

from enofctl.ops import ACTIVATIONS
from enofctl.schema.report import LayerActivity
from enofctl.spiking import SpikingNet, SpikingNeuron


class ActivityMeter:
    """Counts the spikes of every neuron of every spiking layer through forward hooks (no neuron state)."""

    def __init__(self, model: nn.Module):
        self.counts: dict[str, torch.Tensor] = {}  # per neuron: spikes over all steps and samples
        self.rows: dict[str, int] = {}  # T * samples seen
        # every activation module (spiking or not): [non-zero outputs, outputs] over all calls
        self.density: dict[str, list[int]] = {}
        self.spiking: set[str] = set()
        root = model.body if isinstance(model, SpikingNet) else model  # layer names as in the teacher
        self._hooks = [
            m.register_forward_hook(self._hook(name, m))
            for name, m in root.named_modules() if isinstance(m, SpikingNeuron)
        ]
        for name, m in root.named_modules():
            if isinstance(m, ACTIVATIONS):
                self._hooks.append(m.register_forward_hook(self._density(name)))
                if isinstance(m, SpikingNeuron):
                    self.spiking.add(name)

    def _density(self, name: str):
        def fn(_mod, _inp, out):
            d = self.density.setdefault(name, [0, 0])
            d[0] += int(torch.count_nonzero(out.detach()))
            d[1] += out.numel()

        return fn

    def sparsity(self, spiking_only: bool) -> float | None:
        """Zero outputs / outputs over the activation modules seen (only the spiking ones: ``spiking_only``)."""
        seen = [d for n, d in self.density.items() if n in self.spiking or not spiking_only]
        total = sum(d[1] for d in seen)
        return 1 - sum(d[0] for d in seen) / total if total else None

    def sparsity_by_layer(self) -> dict[str, float]:
        return {n: 1 - d[0] / d[1] for n, d in self.density.items() if d[1]}

    def _hook(self, name: str, neuron: SpikingNeuron):
        def fn(_mod, _inp, out):
            per_neuron = (out.detach() != 0).flatten(1).sum(0, dtype=torch.float64)  # [neurons], spike events
            self.counts[name] = self.counts[name] + per_neuron if name in self.counts else per_neuron
            self.rows[name] = self.rows.get(name, 0) + out.shape[0]

        return fn

    def close(self) -> None:
        for h in self._hooks:
            h.remove()

    def layers(self, samples: int, T: int) -> list[LayerActivity]:
        out = []
        for n, c in self.counts.items():
            rows = self.rows[n]  # = T * samples
            out.append(LayerActivity(
                name=n, neurons=c.numel(), firing_rate=c.sum().item() / (c.numel() * rows),
                spikes_per_sample=c.sum().item() / samples, silent=(c == 0).double().mean().item(),
                saturated=(c == rows).double().mean().item(),
            ))
        return out
