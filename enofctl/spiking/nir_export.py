"""A spiking student as a NIR graph (the Neuromorphic Intermediate Representation, PyPI ``nir``).

The student's body is traced with torch.fx (its neurons and ReLUs as leaves) and walked in execution order:

    conv (+ BatchNorm folded)  -> nir.Conv2d        linear (+ BatchNorm1d folded) -> nir.Affine
    avg pool                   -> nir.AvgPool2d     or, with ``sum_pool``, nir.SumPool2d (1/k^2 moved on)
    global average pool        -> nir.AvgPool2d over the whole map (nothing when the map is 1x1)
    flatten                    -> nir.Flatten       (NIR types have no batch dimension: start_dim 0)
    x + y                      -> both producers' edges converge on the consumer (NIR sums a node's inputs)
    SpikingNeuron (LIF)        -> nir.LIF           decay < 1
    SpikingNeuron (decay 1)    -> nir.IF
    dropout, identity          -> nothing

The input node is the normalized image, given at every step (direct encoding); the output is the
classifier's current at each step, and the student's logits are its mean over the T steps.

Neuron mapping. enofctl's neuron (enofctl.spiking.neuron) is, per step of length ``dt``,

    u[t] = d * v[t-1] + I[t],   spike if u[t] > theta,   v[t] = 0 after a spike, else u[t],   v[-1] = 0.

NIR's LIF is ``tau dv/dt = (v_leak - v) + r I``, fire when ``v > v_threshold``, then ``v = v_reset``. Its
forward-Euler step, the integration snnTorch and Norse use, is ``v + (dt/tau) (v_leak - v + r I)``. With

    tau = dt / (1 - d),  r = 1,  v_leak = 0,  v_reset = 0,  v_threshold = (1 - d) * theta

that step is ``d v + (1 - d) I``: the membrane is ``(1 - d)`` times enofctl's, the threshold too, so the
same steps spike. r = 1 because Norse ignores r; snnTorch's reader divides the threshold by ``r dt / tau``
(= 1 - d) and runs ``d v + I`` against ``theta``: enofctl's arithmetic exactly. ``tau`` is chosen in float32
so that the readers' ``1 - dt/tau`` and ``dt * (1/tau)`` round to exactly ``d`` and ``1 - d``.
IF (d = 1): ``dv/dt = r I`` with ``r = 1/dt``, ``v_threshold = theta``, ``v_reset = 0``: ``v + I``.

Calibrated students (``scaling="channel"``): each channel's threshold becomes that neuron's entries of
``v_threshold`` (an array over the layer), and its spike amplitude ``amp`` is a scale factor on the edges
leaving the layer.

Scale factors (a sum pool's 1/k^2, per-channel amplitudes) travel along the edges until a layer takes them: a
conv or linear multiplies its input channels' weights, a pool or flatten passes them on, a neuron divides
its thresholds by them; where a neuron adds branches with different factors (a residual shortcut from a sum
pool or from calibrated spikes), the conv on the other branch has its output channels multiplied instead, so
that every branch carries the shortcut's factor. Powers of two (2x2 pools) keep every number exact;
amplitudes fold into weights with one float32 rounding, as enofctl's own ``spike * amp`` then ``conv``.

Refused, with the way out: soft (subtract) reset (NIR neurons reset to a value), an initial membrane other
than 0, spikes that carry the threshold (CQ integrate-and-fire students), a ReLU inside the network (RepAct's
head: ``split_head`` ends the graph at its input and keeps the head as tensors), branches whose scale factors
no layer can absorb, and any layer NIR has no node for.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from enofctl.config.export import DEFAULT_DT  # seconds per step: snnTorch's NIR reader assumes it
from enofctl.errors import ConversionError, UsageError
from enofctl.spiking.bn import BatchNorm
from enofctl.spiking.convert import SpikingNet
from enofctl.spiking.nir_layers import _fold_bn, _LayerMapping, _name, _same, _Term, _Tracer, import_nir, lif_tau

__all__ = ["DEFAULT_DT", "NIRExport", "fold_batchnorm", "import_nir", "lif_tau", "to_nir"]



@dataclass
class NIRExport:
    """The graph and what a reader needs besides it."""

    graph: Any  # nir.NIRGraph
    neurons: dict[str, str]  # NIR node name -> enofctl neuron (module) name
    head: dict[str, torch.Tensor] | None = None  # split_head: ReLU -> pool -> classifier, as tensors


class _Builder(_LayerMapping):
    def __init__(self, net: SpikingNet, dt: float, sum_pool: bool, split_head: bool):
        self.nir = import_nir()
        self.net, self.dt, self.sum_pool, self.split_head = net, dt, sum_pool, split_head
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.neurons: dict[str, str] = {}
        self.head: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------------------------------------------

    def build(self, input_size: tuple[int, int, int]) -> NIRExport:
        nir = self.nir
        body = self.net.body
        gm = self._trace(body)
        self._shapes(gm, input_size)
        modules = dict(body.named_modules())
        users = {n: len(n.users) for n in gm.graph.nodes}
        values: dict[torch.fx.Node, list[_Term]] = {}
        stop = self._head_start(gm, modules)
        for n in gm.graph.nodes:
            if n is stop:
                self._split(n, values, modules, gm)
                break
            if n.op == "placeholder":
                self.nodes["input"] = nir.Input(input_type={"input": np.array(input_size)})
                out = [_Term("input")]
            elif n.op == "call_module":
                out = self._module(n, modules[n.target], values, modules)
            elif n.op == "call_function":
                out = self._function(n, values)
            elif n.op == "call_method":
                out = self._method(n, values)
            elif n.op == "output":
                self._output(n.args[0], values)
                continue
            else:
                raise ConversionError(f"cannot export {n.name!r} ({n.op}) to NIR")
            if out is not None and users[n] > 1:
                out = [_Term(t.node, t.factor, False) for t in out]
            values[n] = out
        graph = nir.NIRGraph(nodes=self.nodes, edges=self.edges, type_check=False)
        return NIRExport(graph, self.neurons, self.head)

    def _trace(self, body: nn.Module) -> torch.fx.GraphModule:
        try:
            graph = _Tracer().trace(body)
        except Exception as e:  # fx raises many kinds for data-dependent control flow
            raise ConversionError(f"cannot trace {type(body).__name__} for export: {str(e).splitlines()[0][:200]}") \
                from e
        return torch.fx.GraphModule(body, graph)

    def _shapes(self, gm: torch.fx.GraphModule, input_size: tuple[int, int, int]) -> None:
        """Every node's per-sample output shape (one sample: T rows, time folded into the batch)."""
        from torch.fx.passes.shape_prop import ShapeProp

        T = self.net.T
        with self.net.mode(repeat_input=False), torch.no_grad():  # gm runs the body: T rows, one step each
            ShapeProp(gm).propagate(torch.zeros(T, *input_size))
        self.shape = {n: tuple(n.meta["tensor_meta"].shape[1:]) for n in gm.graph.nodes
                      if isinstance(n.meta.get("tensor_meta"), torch.fx.passes.shape_prop.TensorMetadata)}

    def _function(self, n: torch.fx.Node, values) -> list[_Term]:
        if n.target in (operator.add, torch.add) and len(n.args) == 2 and not n.kwargs:
            a, b = n.args
            if not (isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node)):
                raise ConversionError(f"cannot export {n.name!r}: adding a constant has no NIR form here")
            return [_Term(t.node, t.factor, t.private) for t in values[a] + values[b]]
        if n.target is F.dropout:
            return values[n.args[0]]
        if n.target is torch.flatten:
            start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
            return self._flatten(_name(n.name), values[n.args[0]], self.shape[n.args[0]], start, -1)
        raise ConversionError(f"cannot export {n.name!r} ({getattr(n.target, '__name__', n.target)}): NIR has no "
                              "node for it here")

    def _method(self, n: torch.fx.Node, values) -> list[_Term]:
        if n.target == "flatten":
            start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
            return self._flatten(_name(n.name), values[n.args[0]], self.shape[n.args[0]], start, -1)
        raise ConversionError(f"cannot export {n.name!r} (.{n.target}()): NIR has no node for it here")

    def _output(self, arg, values) -> None:
        terms = values[arg]
        f = self._uniform(terms, "the output")
        if not _same(f, 1.0):
            raise ConversionError("cannot export the output: it carries a scale factor no layer absorbed")
        self.nodes["output"] = self.nir.Output(output_type={"output": np.array(self.shape[arg])})
        self._connect(terms, "output")

    # ------------------------------------------------------------------------------------------------------
    # RepAct: the graph ends at the ReLU's input; the head is saved beside it

    def _head_start(self, gm: torch.fx.GraphModule, modules) -> torch.fx.Node | None:
        relus = [n for n in gm.graph.nodes if n.op == "call_module" and isinstance(modules[n.target], nn.ReLU)]
        if not self.split_head:
            return None  # refused where the walk meets the ReLU
        if not relus:
            raise UsageError("--split-head: the student has no ReLU head (it was converted with --no-repact); "
                             "export it without --split-head")
        return relus[-1]

    def _split(self, relu: torch.fx.Node, values, modules, gm: torch.fx.GraphModule) -> None:
        """End the graph at ``relu``'s input and keep what follows (pool, flatten, classifier) as tensors."""
        nir = self.nir
        rest = []
        n = relu.next
        while n.op != "output":
            rest.append(n)
            n = n.next
        classifier = self.net.get_classifier()
        pool_ok = all(
            (n.op == "call_module" and isinstance(modules[n.target], nn.AdaptiveAvgPool2d | nn.Flatten |
                                                  nn.Dropout | nn.Identity | nn.Linear))
            or (n.op == "call_function" and n.target is F.dropout) for n in rest)
        linears = [n for n in rest if n.op == "call_module" and isinstance(modules[n.target], nn.Linear)]
        if not pool_ok or len(linears) != 1 or modules[linears[0].target] is not classifier:
            raise ConversionError("--split-head: after the ReLU the student must only pool globally, flatten and "
                                  "classify")
        terms = values[relu.args[0]]
        f = self._neuron_input(terms, "the head's input")
        shape = self.shape[relu.args[0]]
        if len(terms) > 1 or not _same(f, 1.0):  # one node whose output is the ReLU's input: a 1x1 conv sums
            c = shape[0]
            eye = np.eye(c) * np.broadcast_to(np.asarray(f, dtype=np.float64), (c,))[:, None]
            self.nodes["head_input"] = nir.Conv2d(input_shape=tuple(shape[1:]),
                                                  weight=eye.reshape(c, c, 1, 1).astype(np.float32), stride=(1, 1),
                                                  padding=(0, 0), dilation=(1, 1), groups=1,
                                                  bias=np.zeros(c, dtype=np.float32))
            self._connect(terms, "head_input")
            terms = [_Term("head_input")]
        self.nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
        self._connect(terms, "output")
        self.head = {"weight": classifier.weight.detach().clone().float(),
                     "bias": classifier.bias.detach().clone().float()}


def to_nir(net: SpikingNet, input_size: tuple[int, int, int], dt: float = DEFAULT_DT, sum_pool: bool = False,
           split_head: bool = False) -> NIRExport:
    """The NIR graph of a student (see the module's docstring for the mapping and what is refused)."""
    if net.spec.encoding != "direct":
        raise UsageError(f"cannot export a student with {net.spec.encoding!r} encoding")
    if net.spec.method == "cq":
        raise UsageError("cannot export a CQ integrate-and-fire student: its neurons reset by subtraction and its "
                         "spikes carry the threshold, which NIR neurons cannot express; export a surrogate "
                         "student (convert --method surrogate --reset hard)")
    return _Builder(net, dt, sum_pool, split_head).build(input_size)


def fold_batchnorm(net: SpikingNet) -> SpikingNet:
    """A copy of ``net`` with every BatchNorm that alone reads a conv or linear layer folded into it, as the
    export folds them: the network a NIR graph of ``net`` describes, run by enofctl's own code. Folding
    changes float rounding (a current can move by an ulp), so a neuron within an ulp or two of its threshold
    can fire in one and not the other; comparing against both separates such ties from mapping errors."""
    import copy

    from enofctl.models.base import replace_module

    with net.mode(repeat_input=False):  # the copy's neurons take one step per row, as the graph's do
        folded = copy.deepcopy(net).eval()
    body = folded.body
    graph = _Tracer().trace(body)
    modules = dict(body.named_modules())
    for n in graph.nodes:
        if n.op != "call_module" or not isinstance(modules[n.target], BatchNorm):
            continue
        src = n.args[0]
        layer = modules.get(src.target) if src.op == "call_module" else None
        if not isinstance(layer, nn.Conv2d | nn.Linear) or len(src.users) != 1:
            continue
        weight, bias = _fold_bn(layer.weight.detach(), None if layer.bias is None else layer.bias.detach(),
                                modules[n.target])
        new = copy.deepcopy(layer)
        new.weight = nn.Parameter(weight)
        new.bias = nn.Parameter(bias)
        replace_module(body, src.target, new)
        replace_module(body, n.target, nn.Identity())
    return folded
