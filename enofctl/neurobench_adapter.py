"""NeuroBench's own metrics on an enofctl model (extra `neurobench`): used, not re-implemented.

NeuroBench's ``Benchmark`` runs a ``TorchModel`` over a data loader and measures through hooks. Three things
keep it from running on enofctl's module tree as is; this adapter supplies them and nothing else:

- it finds activation layers by class: it is told that enofctl's ``SpikingNeuron`` (and the CQ / QCFS
  activations) are activations, besides its own ``nn.ReLU`` / ``nn.Sigmoid``;
- it names a layer by its attribute name in its parent, so ``act1`` of every block collides in its by-layer
  sparsity: here each layer is named by its qualified name, as in enofctl's report (``stages.0.0.act1``);
- it feeds a batch to the network as is and compares the output with the labels: a directly encoded student
  takes images ``[B, C, H, W]``, an event student frames ``[B, T, C, H, W]`` (it folds time itself, as for
  ``[B, T, features]``), a teacher given frames averages its logits over them (``spiking.logits_of``); the
  prediction is the arg-max. A SpikingNet resets its membranes at the start of every forward, so no reset
  between batches is needed. Its first layers run at every step (``stem_once`` off), as in ``ops.OpsMeter``.

NeuroBench counts a layer input as spikes only when every element is 0, 1 or -1: a student whose neurons emit
other amplitudes (``scaling="channel"`` with amplitudes != 1, ``scaling="threshold"`` with a threshold != 1)
is refused with that reason instead of being counted in MACs. NeuroBench 2.3's membrane_updates reads the
membrane of snnTorch neurons only, so for enofctl's neurons it reports 0.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from enofctl.errors import MissingDependencyError, first_line
from enofctl.ops import ACTIVATIONS
from enofctl.schema.report import NeuroBenchRun
from enofctl.spiking import SpikingNet, SpikingNeuron, logits_of
from enofctl.spiking.probe import evaluating

INSTALL = "pip install 'enofctl[neurobench]'"


def require() -> str:
    """NeuroBench's version; MissingDependencyError naming the extra when it does not import."""
    try:
        import neurobench
    except ImportError as e:
        raise MissingDependencyError(f"--neurobench needs NeuroBench: {INSTALL}") from e
    return str(neurobench.__version__)


def refusal(model: nn.Module) -> str | None:
    """Why NeuroBench cannot count ``model``'s spikes as spikes (None when it can)."""
    root = model.body if isinstance(model, SpikingNet) else model
    for name, m in root.named_modules():
        if not isinstance(m, SpikingNeuron) or m.scaling == "none":
            continue
        amp = m.v_th if m.scaling == "threshold" else m.amp
        if not bool((amp == 1).all()):
            return (f"{name} emits spikes of amplitude != 1 (scaling {m.scaling!r}); NeuroBench counts an input "
                    "as spikes only when every element is 0, 1 or -1, so its ACs would be MACs: not run")
    return None


class _Logits(nn.Module):
    """The network as NeuroBench calls it: a batch in, logits out."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.net, x)


class _Loader:
    """What Benchmark.run reads of a DataLoader: iteration, ``len()`` and ``len(.dataset)``."""

    def __init__(self, batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]], samples: int, n: int):
        self._batches, self._n, self.dataset = batches, n, range(samples)

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return self._n


def _torch_model(net: nn.Module, root: nn.Module):
    from neurobench.models import TorchModel

    class EnofTorchModel(TorchModel):
        """A TorchModel told of enofctl's activations, its layers named by qualified name."""

        def __init__(self):
            super().__init__(net)
            for cls in ACTIVATIONS:
                if cls not in self.activation_modules:
                    self.add_activation_module(cls)

        def activation_layers(self):
            acts = tuple(self.activation_modules)
            return [{"layer_name": n, "layer": m} for n, m in root.named_modules() if isinstance(m, acts)]

    return EnofTorchModel()


def benchmark(model: nn.Module, batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
              samples: int, n_batches: int) -> NeuroBenchRun:
    """NeuroBench's Benchmark with its static metrics (footprint, connection sparsity, parameter count) and
    workload metrics (accuracy, activation sparsity overall and by layer, synaptic operations, membrane
    updates) on ``model`` over ``batches()`` (normalized ``(x, y)`` on the model's device, ``samples`` in all,
    ``n_batches`` batches). A failure inside NeuroBench comes back as ``error``, one line."""
    version = require()
    reason = refusal(model)
    if reason is not None:
        return NeuroBenchRun(version=version, error=reason)
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ActivationSparsityByLayer,
        ClassificationAccuracy,
        MembraneUpdates,
        SynapticOperations,
    )

    root = model.body if isinstance(model, SpikingNet) else model
    nb_model = _torch_model(_Logits(model), root)
    loader = _Loader(batches, samples, n_batches)
    metrics = [[Footprint, ConnectionSparsity, ParameterCount],
               [ClassificationAccuracy, ActivationSparsity, ActivationSparsityByLayer, SynapticOperations,
                MembraneUpdates]]
    # evaluating restores the mode found here: eval, where TorchModel's constructor has put the model
    every_step = model.mode(stem_once=False) if isinstance(model, SpikingNet) else contextlib.nullcontext()
    out, err = io.StringIO(), io.StringIO()
    try:
        # not quiet: quiet sends stdout to None, and with it the lines NeuroBench prints for a metric that failed
        with every_step, evaluating(model), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            bench = Benchmark(nb_model, loader, [], [lambda logits: logits.argmax(-1)], metrics)
            try:
                res = bench.run(quiet=False)
            finally:
                nb_model.cleanup_hooks()
    except Exception as e:  # NeuroBench's own failure on this model: reported, the rest of eval goes on
        return NeuroBenchRun(version=version, error=f"NeuroBench failed: {first_line(e)}")
    failed = [line.strip() for line in out.getvalue().splitlines() if line.strip().startswith("Error running")]
    if failed:
        return NeuroBenchRun(version=version, error=f"NeuroBench: {failed[0][:200]}")
    syn = res["SynapticOperations"]
    return NeuroBenchRun(
        version=version, footprint_bytes=int(res["Footprint"]), connection_sparsity=float(res["ConnectionSparsity"]),
        parameter_count=int(res["ParameterCount"]), classification_accuracy=float(res["ClassificationAccuracy"]),
        activation_sparsity=float(res["ActivationSparsity"]),
        activation_sparsity_by_layer={k: float(v) for k, v in res["ActivationSparsityByLayer"].items()},
        effective_macs=float(syn["Effective_MACs"]), effective_acs=float(syn["Effective_ACs"]),
        dense=float(syn["Dense"]), membrane_updates=float(res["MembraneUpdates"]),
    )
