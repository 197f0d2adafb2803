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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from enofctl.errors import ConversionError, MissingDependencyError, UsageError
from enofctl.spiking.bn import BatchNorm, fold_bn_weights
from enofctl.spiking.convert import SpikingNet
from enofctl.spiking.fold import ChannelScale
from enofctl.spiking.neuron import SpikingNeuron

DEFAULT_DT = 1e-4  # seconds per step: snnTorch's NIR reader assumes this step


def import_nir():
    """The ``nir`` package, or a UsageError naming the extra to install."""
    try:
        import nir
    except ImportError as e:
        raise MissingDependencyError("--format nir needs the nir package: pip install 'enofctl[nir]'") from e
    return nir


def lif_tau(dt: float, decay: float) -> np.float32:
    """A float32 ``tau`` with ``fl(dt / tau) == fl(1 - decay)`` and ``fl(dt * fl(1 / tau))`` the same, so the
    readers' Euler coefficients round to enofctl's decay (searched among the floats next to ``dt/(1-d)``);
    the nearest float when no neighbour satisfies both."""
    a, target = np.float32(dt), np.float32(1.0 - np.float32(decay))
    first = np.float32(a / target)
    up, down = first, first
    for _ in range(256):
        for t in (up, down):
            if np.float32(a / t) == target and np.float32(a * np.float32(np.float32(1.0) / t)) == target:
                return t
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
    return first


@dataclass
class _Term:
    """One summand of a value in the graph: ``factor`` times the output of NIR node ``node``. ``private``:
    nothing else reads that output (so the node's weights may be rescaled for this consumer)."""

    node: str
    factor: np.ndarray = field(default_factory=lambda: np.float64(1.0))  # a number, or one per channel [C]
    private: bool = True


@dataclass
class NIRExport:
    """The graph and what a reader needs besides it."""

    graph: Any  # nir.NIRGraph
    neurons: dict[str, str]  # NIR node name -> enofctl neuron (module) name
    head: dict[str, torch.Tensor] | None = None  # split_head: ReLU -> pool -> classifier, as tensors


def _name(qualname: str) -> str:
    return qualname.replace(".", "_")


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SpikingNeuron | nn.ReLU | ChannelScale) or super().is_leaf_module(m, qualname)


def _fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight``/``bias`` of a layer followed by ``bn`` (eval mode) as one layer, computed in float64."""
    w, b = fold_bn_weights(weight, bias, bn, dtype=torch.float64)
    return w.float(), b.float()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().float().numpy().copy()


def _same(a, b) -> bool:
    return bool(np.all(np.asarray(a) == np.asarray(b)))


def _channels(f, dims: int) -> np.ndarray:
    """A factor (a number or one per channel) shaped to broadcast over one sample ``[C, ...]`` of ``dims``."""
    f = np.asarray(f, dtype=np.float64)
    return f.reshape(-1, *([1] * (dims - 1))) if f.ndim else f


def _scaled(weight: torch.Tensor, f, dim: int) -> np.ndarray:
    """``weight`` times ``f`` (a number, or one per input channel/feature along ``dim``), in float32."""
    w = weight.detach().double().numpy()
    f = np.asarray(f, dtype=np.float64)
    if f.ndim:
        f = f.reshape([-1 if d == dim else 1 for d in range(w.ndim)])
    return (w * f).astype(np.float32)


def _pair(v) -> np.ndarray:
    return np.array(v if isinstance(v, tuple | list) else (v, v), dtype=np.int64)


class _Builder:
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

    # ------------------------------------------------------------------------------------------------------
    # edges, and scale factors moving along them

    def _connect(self, terms: list[_Term], dst: str) -> None:
        for t in terms:
            self.edges.append((t.node, dst))

    @staticmethod
    def _uniform(terms: list[_Term], what: str) -> np.ndarray:
        """The one scale factor all ``terms`` carry (a number or one per channel)."""
        first = terms[0].factor
        if any(not _same(t.factor, first) for t in terms[1:]):
            raise ConversionError(f"cannot export {what}: its inputs carry different scale factors (a sum pool or "
                                  "per-channel spike amplitudes on one branch only)")
        return first

    def _rescale(self, node: str, s: np.ndarray) -> None:
        """Multiply NIR node ``node``'s weights and bias by ``s`` (a number, or one per output channel): a conv
        or affine whose output only this consumer reads."""
        nd = self.nodes[node]
        s = np.asarray(s, dtype=np.float64)
        col = s.reshape(-1, *([1] * (nd.weight.ndim - 1))) if s.ndim else s
        nd.weight = (nd.weight * col).astype(np.float32)
        nd.bias = (nd.bias * s).astype(np.float32)

    def _neuron_input(self, terms: list[_Term], what: str) -> np.ndarray:
        """Make the terms into one NIR sum (rescaling private conv/affine producers where factors differ);
        returns the factor of that sum relative to the true input current."""
        fixed = [t.factor for t in terms if not self._scalable(t)]
        if any(not _same(f, fixed[0]) for f in fixed[1:]):
            raise ConversionError(f"cannot export {what}: it adds branches with different scale factors (a sum "
                                  "pool or per-channel spike amplitudes) that no layer can absorb")
        target = fixed[0] if fixed else terms[0].factor
        for t in terms:
            if not _same(t.factor, target):
                self._rescale(t.node, np.asarray(t.factor, dtype=np.float64) / target)
                t.factor = target
        return target

    def _scalable(self, t: _Term) -> bool:
        return t.private and isinstance(self.nodes[t.node], self.nir.Conv2d | self.nir.Affine)

    # ------------------------------------------------------------------------------------------------------

    def _module(self, n: torch.fx.Node, m: nn.Module, values, modules) -> list[_Term] | None:
        nir = self.nir
        name = _name(n.target)
        ins = values[n.args[0]]
        shape_in = self.shape.get(n.args[0])
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros" or isinstance(m.padding, str):
                raise ConversionError(f"cannot export {n.target!r}: padding {m.padding!r} ({m.padding_mode})")
            weight, bias = self._folded(n, m, modules)
            f = self._uniform(ins, repr(n.target))
            if np.ndim(f) and m.groups != 1:
                raise ConversionError(f"cannot export {n.target!r}: per-channel amplitudes into a grouped conv")
            self.nodes[name] = nir.Conv2d(
                input_shape=tuple(int(s) for s in shape_in[1:]), weight=_scaled(weight, f, 1),
                stride=tuple(m.stride), padding=tuple(m.padding), dilation=tuple(m.dilation), groups=m.groups,
                bias=_np(bias))
            self._connect(ins, name)
            return [_Term(name)]
        if isinstance(m, nn.Linear):
            weight, bias = self._folded(n, m, modules)
            f = self._uniform(ins, repr(n.target))
            self.nodes[name] = nir.Affine(weight=_scaled(weight, f, 1), bias=_np(bias))
            self._connect(ins, name)
            return [_Term(name)]
        if isinstance(m, BatchNorm):
            src = n.args[0]
            if not (src.op == "call_module" and isinstance(modules[src.target], nn.Conv2d | nn.Linear)
                    and len(src.users) == 1):
                raise ConversionError(f"cannot export {n.target!r}: a BatchNorm is folded into the conv or linear "
                                      "layer before it, and this one follows something else")
            return ins  # folded into the producing layer (_folded)
        if isinstance(m, SpikingNeuron):
            return self._neuron(n, m, ins, name)
        if isinstance(m, nn.ReLU):
            raise UsageError(f"cannot export {n.target!r}: a ReLU (RepAct's analog head) has no NIR spiking form; "
                             "give --split-head to export the spiking body and save the head beside it")
        if isinstance(m, nn.AvgPool2d):
            if m.ceil_mode or _pair(m.padding).any() or m.divisor_override:
                raise ConversionError(f"cannot export {n.target!r}: only average pools without padding, "
                                      "ceil_mode or divisor_override have a NIR node")
            return self._pool(name, ins, _pair(m.kernel_size), _pair(m.stride if m.stride is not None else
                                                                     m.kernel_size))
        if isinstance(m, nn.AdaptiveAvgPool2d):
            out = _pair(m.output_size)
            hw = np.array(shape_in[1:])
            if (hw % out).any():
                raise ConversionError(f"cannot export {n.target!r}: a {tuple(hw)} map does not divide into "
                                      f"{tuple(out)}")
            k = hw // out
            return ins if (k == 1).all() else self._pool(name, ins, k, k)
        if isinstance(m, nn.Flatten):
            return self._flatten(name, ins, shape_in, m.start_dim, m.end_dim)
        if isinstance(m, nn.Dropout | nn.Identity):
            return ins
        if isinstance(m, ChannelScale):  # a folded student's shortcut factor: a diagonal 1x1 conv (NIR's type
            # inference reads a grouped conv's input channels from its weight alone, so not groups=C)
            f = np.broadcast_to(np.asarray(self._uniform(ins, repr(n.target)), dtype=np.float64), m.scale.shape)
            c = m.scale.numel()
            weight = np.diag(m.scale.double().cpu().numpy() * f).astype(np.float32).reshape(c, c, 1, 1)
            self.nodes[name] = nir.Conv2d(input_shape=tuple(int(s) for s in shape_in[1:]), weight=weight,
                                          stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                                          bias=np.zeros(c, dtype=np.float32))
            self._connect(ins, name)
            return [_Term(name)]
        raise ConversionError(f"cannot export {n.target!r} ({type(m).__name__}): NIR has no node for it here")

    def _folded(self, n: torch.fx.Node, m: nn.Module, modules) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's weight and bias with the BatchNorm that alone reads it folded in (refuses a BatchNorm
        that reads anything else)."""
        weight = m.weight.detach()
        bias = m.bias.detach() if m.bias is not None else torch.zeros(weight.shape[0])
        users = list(n.users)
        if len(users) == 1 and users[0].op == "call_module":
            bn = modules[users[0].target]
            if isinstance(bn, BatchNorm):
                if bn.training or bn.running_mean is None:
                    raise ConversionError(f"cannot fold {users[0].target!r}: no running statistics")
                return _fold_bn(weight, bias, bn)
        for u in users:
            if u.op == "call_module" and isinstance(modules[u.target], BatchNorm):
                raise ConversionError(f"cannot fold {u.target!r} into {n.target!r}: the layer has other readers")
        return weight, bias

    def _pool(self, name: str, ins: list[_Term], k: np.ndarray, stride: np.ndarray) -> list[_Term]:
        nir = self.nir
        f = self._uniform(ins, name)
        cls = nir.SumPool2d if self.sum_pool else nir.AvgPool2d
        self.nodes[name] = cls(kernel_size=k, stride=stride, padding=np.zeros(2, dtype=np.int64))
        self._connect(ins, name)
        return [_Term(name, f / float(k.prod()) if self.sum_pool else f)]  # per channel stays per channel

    def _flatten(self, name: str, ins: list[_Term], shape_in: tuple[int, ...], start: int, end: int) -> list[_Term]:
        # torch's dims count the batch; NIR's types do not
        start = start - 1 if start > 0 else start
        end = end - 1 if end > 0 else end
        if start != 0 or end not in (-1, len(shape_in) - 1):
            raise ConversionError(f"cannot export flatten {name!r}: only a flatten of each sample's every "
                                  "dimension has a NIR form here")
        if len(shape_in) == 1:
            return ins
        f = self._uniform(ins, name)
        if np.ndim(f):  # one factor per channel -> one per flattened feature
            f = np.repeat(f, int(np.prod(shape_in[1:])))
        self.nodes[name] = self.nir.Flatten(input_type={"input": np.array(shape_in)}, start_dim=0, end_dim=-1)
        self._connect(ins, name)
        return [_Term(name, f)]

    def _neuron(self, n: torch.fx.Node, m: SpikingNeuron, ins: list[_Term], name: str) -> list[_Term]:
        nir = self.nir
        spec, what = m.spec, repr(n.target)
        if spec.reset != "hard":
            raise UsageError(f"cannot export {what}: soft (subtract) reset has no NIR form (NIR neurons reset to "
                             "v_reset); export a student converted with --reset hard")
        if spec.v_init:
            raise UsageError(f"cannot export {what}: an initial membrane of {spec.v_init} x v_th has no NIR form; "
                             "export a student converted with --v-init 0")
        if m.scaling == "threshold":
            raise UsageError(f"cannot export {what}: its spikes carry the threshold as amplitude (a CQ "
                             "integrate-and-fire student), which NIR spikes cannot")
        shape = self.shape[n]
        theta = np.full(shape, float(spec.v_th), dtype=np.float64)
        amp = np.float64(1.0)
        if m.scaling == "channel":  # calibrated: a threshold per channel; spikes worth amp downstream
            theta = np.broadcast_to(_channels(m.v_th.double().numpy(), len(shape)), shape).copy()
            if not torch.equal(m.amp, torch.ones_like(m.amp)):
                amp = m.amp.double().numpy().copy()
        f = self._neuron_input(ins, what)
        theta = theta / _channels(f, len(shape))  # the NIR sum is the current divided by f
        decay = 1.0 if spec.kind == "if" else float(spec.decay)
        zeros = np.zeros(shape, dtype=np.float32)
        if decay == 1.0:
            node = nir.IF(r=np.full(shape, 1.0 / self.dt, dtype=np.float32), v_threshold=theta.astype(np.float32),
                          v_reset=zeros)
        else:
            tau = lif_tau(self.dt, decay)
            node = nir.LIF(tau=np.full(shape, tau, dtype=np.float32), r=np.ones(shape, dtype=np.float32),
                           v_leak=zeros, v_threshold=(theta * (1.0 - decay)).astype(np.float32),
                           v_reset=zeros.copy())
        self.nodes[name] = node
        self.neurons[name] = n.target
        self._connect(ins, name)
        return [_Term(name, amp)]

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
