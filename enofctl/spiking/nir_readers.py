"""Run a NIR graph in other simulators, to check an export against enofctl's own forward pass.

Each reader turns the graph into a torch module with that project's own code and steps it T times per
input, feeding the same (normalized) image at every step. NIR's types have no batch dimension (a
``nir.Flatten`` with ``start_dim=0`` flattens one whole sample); the readers
pass ``start_dim`` to ``torch.nn.Flatten`` as it is, so to run a batch the harness moves such a flatten's
``start_dim`` past the batch dimension, the one change it makes to what a reader built.

- ``snntorch``: ``snntorch.import_nir.import_from_nir`` as published (LIF -> ``snn.Leaky``, reset to zero,
  its own fixed step of 1e-4 s; nirtorch's mapping runs SumPool2d; it cannot read IF neurons or
  per-channel thresholds).
- ``norse``: Norse's node importer (``norse.torch.utils.import_nir``: LIF -> ``LIFBoxCell``, IF ->
  ``IAFCell``, forward Euler at the graph's ``dt``) wired by ``nirtorch.nir_to_torch``; Norse has no
  AvgPool2d, so nirtorch's own mapping runs those. Norse's ``from_nir`` itself still uses nirtorch's
  deprecated executor, which orders nodes depth-first and so runs a residual block's addition before one of
  its branches (``norse-from_nir`` runs it as published, to show that).
- ``nirtorch``: ``nirtorch.nir_to_torch``'s own layer mapping, with the LIF/IF equations of NIR's
  documentation integrated by forward Euler (written here, from the spec, not from enofctl's neuron).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from enofctl.errors import MissingDependencyError, UsageError

READERS = ("snntorch", "norse", "nirtorch", "norse-from_nir")


@dataclass
class ReaderRun:
    """What a reader computed on N inputs: the output summed over T per input, and spikes per neuron node."""

    reader: str
    outputs: torch.Tensor  # [N, ...] the graph output summed over the T steps
    spikes: dict[str, int]  # NIR neuron node -> spikes over all inputs and steps


def _quiet():
    """The readers print and warn per node; keep that out of enofctl's output."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    stack.callback(logging.disable, logging.NOTSET)
    return stack


def _need(module: str, reader: str):
    import importlib

    try:
        with _quiet():
            return importlib.import_module(module)
    except ImportError as e:
        package = module.split(".")[0]
        raise MissingDependencyError(f"reader {reader!r} needs {package}: pip install 'enofctl[nir]'") from e


# ----------------------------------------------------------------------------------------------------------
# NIR's neuron equations, forward Euler, for the plain nirtorch reader


class SpecLIF(nn.Module):
    """``tau dv/dt = (v_leak - v) + r I``; fire when ``v > v_threshold``, then ``v = v_reset`` (NIR's LIF)."""

    def __init__(self, node, dt: float):
        super().__init__()
        for k in ("tau", "r", "v_leak", "v_threshold", "v_reset"):
            self.register_buffer(k, torch.from_numpy(np.asarray(getattr(node, k), dtype=np.float32)))
        self.dt = dt

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        v = self.v_leak.expand_as(x) if state is None else state
        v = v + (self.dt / self.tau) * (self.v_leak - v + self.r * x)
        z = (v > self.v_threshold).to(x.dtype)
        return z, torch.where(z > 0, self.v_reset.expand_as(v), v)


class SpecIF(nn.Module):
    """``dv/dt = r I``; fire when ``v > v_threshold``, then ``v = v_reset`` (NIR's IF)."""

    def __init__(self, node, dt: float):
        super().__init__()
        for k in ("r", "v_threshold", "v_reset"):
            self.register_buffer(k, torch.from_numpy(np.asarray(getattr(node, k), dtype=np.float32)))
        self.dt = dt

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        v = torch.zeros_like(x) if state is None else state
        v = v + self.dt * self.r * x
        z = (v > self.v_threshold).to(x.dtype)
        return z, torch.where(z > 0, self.v_reset.expand_as(v), v)


def _affine(node) -> nn.Linear:
    m = nn.Linear(node.weight.shape[1], node.weight.shape[0])
    m.weight.data = torch.from_numpy(np.asarray(node.weight, dtype=np.float32))
    m.bias.data = torch.from_numpy(np.asarray(node.bias, dtype=np.float32))
    return m


# ----------------------------------------------------------------------------------------------------------


def _fresh_state(module: nn.Module):
    """A new, empty state for a module built by ``nirtorch.nir_to_torch`` (its default state is one dict
    made when the graph was traced, shared by every call that passes none)."""
    if isinstance(module, torch.fx.GraphModule):
        return {name: None for name, _ in module.named_children()}
    return None  # nirtorch's older GraphExecutor makes a new state when given none


def load_reader(reader: str, graph, dt: float) -> tuple[nn.Module, Callable[[nn.Module], None]]:
    """(module, reset): the graph as ``reader`` builds it; ``reset(module)`` clears the state its neurons
    keep inside (snnTorch) between inputs. The module is called ``module(x, state) -> (y, state)``."""
    nir = _need("nir", reader)
    if reader == "snntorch":
        snn = _need("snntorch", reader)
        imp = _need("snntorch.import_nir", reader)
        with _quiet():
            module = imp.import_from_nir(graph)

        def reset(m: nn.Module) -> None:
            for x in m.modules():
                if isinstance(x, snn.Leaky):
                    x.reset_mem()

        return module, reset
    if reader in ("norse", "norse-from_nir"):
        _need("norse.torch", reader)
        imp = _need("norse.torch.utils.import_nir", reader)
        nirtorch = _need("nirtorch", reader)
        with _quiet():
            if reader == "norse-from_nir":
                module = imp.from_nir(graph, ignore_warnings=True, dt=dt)
            else:
                def norse_node(node):
                    return imp._import_norse_module(node, ignore_warnings=True, dt=dt)

                kinds = (nir.LIF, nir.IF, nir.Conv2d, nir.Affine, nir.Flatten, nir.SumPool2d)
                module = nirtorch.nir_to_torch(graph, {k: norse_node for k in kinds})
        return module, lambda m: None
    if reader == "nirtorch":
        nirtorch = _need("nirtorch", reader)
        node_map = {nir.LIF: lambda n: SpecLIF(n, dt), nir.IF: lambda n: SpecIF(n, dt), nir.Affine: _affine}
        with _quiet():
            module = nirtorch.nir_to_torch(graph, node_map)
        return module, lambda m: None
    raise UsageError(f"unknown reader {reader!r}; choose from {', '.join(READERS)}")


def _first(out):
    return out[0] if isinstance(out, tuple | list) else out


def _batched(module: nn.Module) -> None:
    """Let ``module`` take a batch: its ``Flatten(start_dim=0)`` (a whole NIR sample) starts after the batch."""
    for m in module.modules():
        if isinstance(m, nn.Flatten) and m.start_dim == 0:
            m.start_dim = 1


@torch.no_grad()
def run_reader(reader: str, graph, x: torch.Tensor, T: int, dt: float, neurons: list[str],
               batch_size: int = 256, step: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ReaderRun:
    """``graph`` run by ``reader`` on the inputs ``x`` [N, C, H, W] for ``T`` steps (the same input at every
    step), ``batch_size`` at a time; spikes counted at the modules named like the NIR neuron nodes in
    ``neurons``. The output is the graph's output (through ``step``, if given, at each step) summed over the
    steps, [N, ...]."""
    shape = next(tuple(int(s) for s in n.output_type["output"]) for n in graph.nodes.values()
                 if type(n).__name__ == "Output")
    module, reset = load_reader(reader, graph, dt)
    module.eval()
    _batched(module)
    counts = dict.fromkeys(neurons, 0)
    found = {}
    for name, m in module.named_modules():
        key = name.rsplit(".", 1)[-1]
        if key in counts and key not in found:
            found[key] = m
    missing = sorted(set(neurons) - set(found))
    if missing:
        raise RuntimeError(f"reader {reader!r} built no module for neuron nodes {missing[:3]}")

    def hook(key: str):
        def fn(_m, _inp, out):
            counts[key] += int((_first(out) != 0).sum())
        return fn

    hooks = [m.register_forward_hook(hook(k)) for k, m in found.items()]
    outputs = []
    try:
        with _quiet():
            for xb in x.split(batch_size):
                reset(module)
                state, total = _fresh_state(module), None
                for _ in range(T):
                    y, state = module(xb, state)
                    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (xb.shape[0], *shape):
                        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                        raise RuntimeError(f"reader {reader!r} returned {got}, not the graph's output "
                                           f"{(xb.shape[0], *shape)}")
                    y = y if step is None else step(y)
                    total = y.clone() if total is None else total + y
                outputs.append(total)
    finally:
        for h in hooks:
            h.remove()
    return ReaderRun(reader, torch.cat(outputs), counts)
